"""The Admin API root fields the stand-in answers, one function each, by field name.

A resolver takes the shop and the field's arguments (variables already substituted) and
returns plain data; `graph.Projector` cuts the answer the document asked for out of it.
Root fields not listed here answer a GraphQL error naming them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, overload

from plugin.standin.shop import ShopState, gid, number_of

Resolver = Callable[[ShopState, dict[str, Any]], Any]


class Orders(Sequence[dict[str, Any]]):
    """The shop's open shipments as orders, made only for the page that is read."""

    def __init__(self, shop: ShopState, ids: list[int]):
        self.shop = shop
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self.shop.order(n) for n in self.ids[index]]
        return self.shop.order(self.ids[index])


def order(shop: ShopState, args: dict[str, Any]) -> Any:
    return shop.order(args.get("id"))


def orders(shop: ShopState, args: dict[str, Any]) -> Any:
    # An order overridden to None has been deleted; the others are made on demand.
    return Orders(shop, [n for n in shop.shipments() if n not in shop.orders or shop.orders[n] is not None])


def fulfillment_orders(shop: ShopState, args: dict[str, Any]) -> Any:
    found = []
    for number in shop.shipments():
        placed = shop.order(number)
        if placed is not None:
            found.extend(placed["fulfillmentOrders"])
    return found


def fulfillment(shop: ShopState, args: dict[str, Any]) -> Any:
    number = number_of(args.get("id"))
    if number is None:
        return None
    # Fulfillment numbers are made from order numbers; any id names a plausible one.
    placed = shop.order(number)
    if placed is None:
        return None
    return {**placed["fulfillments"][0], "id": args.get("id"), "order": placed}


def customer(shop: ShopState, args: dict[str, Any]) -> Any:
    number = number_of(args.get("id"))
    placed = shop.order(number) if number is not None else None
    return None if placed is None else {**placed["customer"], "id": args.get("id")}


def return_(shop: ShopState, args: dict[str, Any]) -> Any:
    number = number_of(args.get("id"))
    placed = shop.order(number) if number is not None else None
    if placed is None or number is None:
        return None
    return {
        "__typename": "Return",
        "id": args.get("id"),
        "name": f"{placed['name']}-R1",
        "status": "OPEN",
        "totalQuantity": 1,
        "decline": None,
        "order": placed,
        "returnLineItems": [
            {
                "__typename": "ReturnLineItem",
                "id": gid("ReturnLineItem", number),
                "quantity": 1,
                "returnReason": "SIZE_TOO_SMALL",
                "returnReasonNote": "",
                "customerNote": "A size too small.",
            }
        ],
    }


def refund(shop: ShopState, args: dict[str, Any]) -> Any:
    number = number_of(args.get("id"))
    placed = shop.order(number) if number is not None else None
    if placed is None:
        return None
    return {
        "__typename": "Refund",
        "id": args.get("id"),
        "createdAt": placed["updatedAt"],
        "note": "Item arrived damaged",
        "totalRefundedSet": placed["totalPriceSet"],
        "order": placed,
        "return": None,
    }


def node(shop: ShopState, args: dict[str, Any]) -> Any:
    node_id = str(args.get("id") or "")
    kind = node_id.split("/")[-2] if node_id.count("/") >= 3 else ""
    lookups: dict[str, Resolver] = {
        "Order": order,
        "Fulfillment": fulfillment,
        "Customer": customer,
        "Return": return_,
        "Refund": refund,
        "DiscountCodeNode": code_discount_node,
        "BulkOperation": bulk_operation,
    }
    resolver = lookups.get(kind)
    return resolver(shop, {"id": node_id}) if resolver else None


def nodes(shop: ShopState, args: dict[str, Any]) -> Any:
    return [node(shop, {"id": each}) for each in args.get("ids") or []]


def shop_(shop: ShopState, args: dict[str, Any]) -> Any:
    name = shop.domain.split(".")[0].replace("-", " ").title()
    return {
        "__typename": "Shop",
        "id": gid("Shop", 60_000_000_000 + sum(shop.domain.encode())),
        "name": name,
        "email": f"owner@{shop.domain.split('.')[0]}.example.com",
        "contactEmail": f"hello@{shop.domain.split('.')[0]}.example.com",
        "myshopifyDomain": shop.domain,
        "currencyCode": shop.currency,
        "ianaTimezone": "America/Toronto",
        "primaryDomain": {"__typename": "Domain", "host": shop.domain, "url": f"https://{shop.domain}"},
        "plan": {
            "__typename": "ShopPlan",
            "displayName": shop.bucket.plan.name.title(),
            "partnerDevelopment": False,
            "shopifyPlus": shop.bucket.plan.name == "plus",
        },
    }


def current_app_installation(shop: ShopState, args: dict[str, Any]) -> Any:
    scopes = (
        "read_orders",
        "write_orders",
        "read_returns",
        "read_fulfillments",
        "read_customers",
        "write_discounts",
    )
    return {
        "__typename": "AppInstallation",
        "id": gid("AppInstallation", 1),
        "accessScopes": [{"__typename": "AccessScope", "handle": s} for s in scopes],
    }


def code_discount_node_by_code(shop: ShopState, args: dict[str, Any]) -> Any:
    return shop.discounts.get(str(args.get("code") or "").lower())


def code_discount_node(shop: ShopState, args: dict[str, Any]) -> Any:
    return shop.discount_by_id(args.get("id"))


def webhook_subscriptions(shop: ShopState, args: dict[str, Any]) -> Any:
    topics = args.get("topics")
    return [w for w in shop.webhooks if not topics or w["topic"] in topics]


def discount_code_basic_create(shop: ShopState, args: dict[str, Any]) -> Any:
    return shop.create_discount("DiscountCodeBasic", "basicCodeDiscount", args.get("basicCodeDiscount") or {})


def discount_code_free_shipping_create(shop: ShopState, args: dict[str, Any]) -> Any:
    data = args.get("freeShippingCodeDiscount") or {}
    return shop.create_discount("DiscountCodeFreeShipping", "freeShippingCodeDiscount", data)


def tags_add(shop: ShopState, args: dict[str, Any]) -> Any:
    node_id = str(args.get("id") or "")
    tags = args.get("tags") or []
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    if number_of(node_id) is None:
        error = {"__typename": "UserError", "field": ["id"], "message": "Invalid global id"}
        return {"__typename": "Payload", "node": None, "userErrors": [error]}
    shop.add_tags(node_id, [str(t) for t in tags])
    return {"__typename": "Payload", "node": {"__typename": "Order", "id": node_id}, "userErrors": []}


def staged_uploads_create(shop: ShopState, args: dict[str, Any]) -> Any:
    targets = []
    for item in args.get("input") or []:
        if not isinstance(item, dict):
            error = {"__typename": "UserError", "field": ["input"], "message": "Each input must be an object"}
            return {"__typename": "Payload", "stagedTargets": [], "userErrors": [error]}
        key = f"tmp/{uuid.uuid4().hex}/{item.get('filename') or 'upload'}"
        parameters = [
            {"__typename": "StagedUploadParameter", "name": "key", "value": key},
            {"__typename": "StagedUploadParameter", "name": "Content-Type", "value": item.get("mimeType")},
            {"__typename": "StagedUploadParameter", "name": "success_action_status", "value": "201"},
        ]
        url = f"{shop.upload_url}/_staged_uploads"
        targets.append(
            {
                "__typename": "StagedMediaUploadTarget",
                "url": url,
                "resourceUrl": None,
                "parameters": parameters,
            }
        )
    return {"__typename": "Payload", "stagedTargets": targets, "userErrors": []}


def bulk_operation_run_mutation(shop: ShopState, args: dict[str, Any]) -> Any:
    def refused(message: str) -> dict[str, Any]:
        error = {"__typename": "BulkMutationUserError", "field": None, "message": message, "code": None}
        return {"__typename": "Payload", "bulkOperation": None, "userErrors": [error]}

    path = str(args.get("stagedUploadPath") or "")
    if path not in shop.staged:
        return refused("The staged upload path is not valid for this shop.")
    running = [op for op in shop.bulk_operations.values() if op["status"] in ("CREATED", "RUNNING")]
    if running:
        return refused(
            f"A bulk mutation operation for this app and shop is already in progress: {running[0]['id']}."
        )
    number = shop.next_id()
    operation = {
        "__typename": "BulkOperation",
        "id": gid("BulkOperation", number),
        "status": "CREATED",
        "type": "MUTATION",
        "errorCode": None,
        "objectCount": "0",
        "url": None,
        "partialDataUrl": None,
        "query": str(args.get("mutation") or ""),
        "_lines": shop.staged.pop(path).decode("utf-8", "replace").splitlines(),
    }
    shop.bulk_operations[number] = operation
    shop.bulk_to_run.append(number)
    return {"__typename": "Payload", "bulkOperation": operation, "userErrors": []}


def bulk_operation(shop: ShopState, args: dict[str, Any]) -> Any:
    number = number_of(args.get("id"))
    return shop.bulk_operations.get(number) if number is not None else None


def tags_remove(shop: ShopState, args: dict[str, Any]) -> Any:
    node_id = str(args.get("id") or "")
    remove = set(args.get("tags") or [])
    shop.tags[node_id] = [t for t in shop.tags.get(node_id, []) if t not in remove]
    return {"__typename": "Payload", "node": {"__typename": "Order", "id": node_id}, "userErrors": []}


def order_update(shop: ShopState, args: dict[str, Any]) -> Any:
    data = args.get("input") or {}
    placed = shop.order(data.get("id"))
    if placed is None:
        error = {"__typename": "UserError", "field": ["id"], "message": "Order does not exist"}
        return {"__typename": "Payload", "order": None, "userErrors": [error]}
    number = number_of(placed["id"])
    assert number is not None
    if data.get("tags") is not None:
        shop.tags[placed["id"]] = [str(t) for t in data["tags"]]
    if "note" in data:
        shop.orders[number] = {**(shop.orders.get(number) or {}), "note": data["note"]}
    placed = shop.order(number)
    return {"__typename": "Payload", "order": placed, "userErrors": []}


def webhook_subscription_create(shop: ShopState, args: dict[str, Any]) -> Any:
    return shop.create_webhook(args.get("topic"), args.get("webhookSubscription") or {})


def webhook_subscription_update(shop: ShopState, args: dict[str, Any]) -> Any:
    found = next((w for w in shop.webhooks if w["id"] == args.get("id")), None)
    if found is None:
        error = {"__typename": "UserError", "field": ["id"], "message": "Webhook subscription does not exist"}
        return {"__typename": "Payload", "webhookSubscription": None, "userErrors": [error]}
    data = args.get("webhookSubscription") or {}
    uri = data.get("uri") or data.get("callbackUrl")
    if uri:
        found.update(
            uri=uri, callbackUrl=uri, endpoint={"__typename": "WebhookHttpEndpoint", "callbackUrl": uri}
        )
    for name in ("format", "filter", "includeFields"):
        if name in data:
            found[name] = data[name]
    return {"__typename": "Payload", "webhookSubscription": found, "userErrors": []}


def webhook_subscription_delete(shop: ShopState, args: dict[str, Any]) -> Any:
    before = len(shop.webhooks)
    shop.webhooks = [w for w in shop.webhooks if w["id"] != args.get("id")]
    deleted = args.get("id") if len(shop.webhooks) < before else None
    errors = (
        []
        if deleted
        else [{"__typename": "UserError", "field": ["id"], "message": "Webhook subscription does not exist"}]
    )
    return {"__typename": "Payload", "deletedWebhookSubscriptionId": deleted, "userErrors": errors}


QUERIES: dict[str, Resolver] = {
    "order": order,
    "orders": orders,
    "fulfillment": fulfillment,
    "fulfillmentOrders": fulfillment_orders,
    "customer": customer,
    "return": return_,
    "refund": refund,
    "node": node,
    "nodes": nodes,
    "shop": shop_,
    "currentAppInstallation": current_app_installation,
    "codeDiscountNodeByCode": code_discount_node_by_code,
    "codeDiscountNode": code_discount_node,
    "webhookSubscriptions": webhook_subscriptions,
}

MUTATIONS: dict[str, Resolver] = {
    "discountCodeBasicCreate": discount_code_basic_create,
    "discountCodeFreeShippingCreate": discount_code_free_shipping_create,
    "tagsAdd": tags_add,
    "stagedUploadsCreate": staged_uploads_create,
    "bulkOperationRunMutation": bulk_operation_run_mutation,
    "tagsRemove": tags_remove,
    "orderUpdate": order_update,
    "webhookSubscriptionCreate": webhook_subscription_create,
    "webhookSubscriptionUpdate": webhook_subscription_update,
    "webhookSubscriptionDelete": webhook_subscription_delete,
}
