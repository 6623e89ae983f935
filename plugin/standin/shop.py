"""What the stand-in knows about one shop: its orders (made up, but stable per id), the
discount codes, tags and webhook subscriptions created in it, and its access tokens.

Orders are generated from their id, so any order a sample webhook names exists, with the
same customer every time it is read. Tests and benchmarks override single orders
(`orders[number] = {...}` or None) or the open shipments the late-delivery scan pages
through (`seed_orders`, the only way to have shipments past their estimated delivery).
"""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from plugin.standin.cost import PLANS, Bucket, Plan

FIRST_NAMES = ("Ana", "Ben", "Chloé", "Dmitri", "Eun-ji", "Farah", "Gustav", "Hana", "Ifeoma", "Jonas")
LAST_NAMES = ("Silva", "Okafor", "Müller", "Tanaka", "Dubois", "Novak", "Haddad", "Larsen")
LOCALES = ("en", "en", "en", "fr", "de", "es")
CONSENT = ("SUBSCRIBED", "SUBSCRIBED", "NOT_SUBSCRIBED", "UNSUBSCRIBED")
CARRIERS = (("UPS", "https://www.ups.com/track?tracknum="), ("DHL", "https://www.dhl.com/track?id="))


def gid(kind: str, number: int | str) -> str:
    return f"gid://shopify/{kind}/{number}"


def number_of(value: Any) -> int | None:
    """123 from "gid://shopify/Order/123", "123" or 123."""
    text = str(value).rsplit("/", 1)[-1]
    return int(text) if text.isdigit() else None


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def money(amount: str, currency: str) -> dict[str, Any]:
    value = {"__typename": "MoneyV2", "amount": amount, "currencyCode": currency}
    return {"__typename": "MoneyBag", "shopMoney": value, "presentmentMoney": value}


class ShopState:
    """One shop. Every method is called with `lock` held by the server."""

    def __init__(self, domain: str, plan: Plan):
        self.domain = domain
        self.lock = threading.RLock()
        self.bucket = Bucket(plan)
        self.currency = "USD"
        self.orders: dict[int, dict[str, Any] | None] = {}  # overrides; None = not found
        self.open_shipments: list[int] | None = None  # order ids the scan pages through
        self.late: set[int] = set()
        self.tags: dict[str, list[str]] = {}
        self.discounts: dict[str, dict[str, Any]] = {}  # lower-cased code → DiscountCodeNode
        self.discount_log: list[dict[str, Any]] = []  # every code created, in order
        self.webhooks: list[dict[str, Any]] = []
        self.valid_tokens: set[str] | None = None  # None: any non-empty token is accepted
        self.token_expiry: dict[str, float] = {}
        self.refresh_tokens: dict[str, str] = {}  # refresh token → access token it belongs to
        self.counter = 0
        # Bulk mutations: files uploaded to the staged-upload URL (by key), and operations.
        self.upload_url = ""  # set by the server: where stagedUploadsCreate sends clients
        self.staged: dict[str, bytes] = {}
        self.bulk_operations: dict[int, dict[str, Any]] = {}
        self.bulk_to_run: list[int] = []

    def next_id(self) -> int:
        self.counter += 1
        return 1_000_000 + self.counter

    def set_plan(self, plan: str | Plan) -> None:
        self.bucket = Bucket(PLANS[plan] if isinstance(plan, str) else plan)

    # -- orders ---------------------------------------------------------------------------

    def order(self, order_id: Any) -> dict[str, Any] | None:
        number = number_of(order_id)
        if number is None:
            return None
        if number in self.orders:
            override = self.orders[number]
            if override is None:
                return None
            return {**self.generated_order(number), **override}
        return self.generated_order(number)

    def generated_order(self, number: int) -> dict[str, Any]:
        rng = random.Random(number)  # noqa: S311 - made-up data, stable per order
        now = datetime.now(UTC)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        customer_number = 7_000_000_000 + number % 1_000_000_000
        email = f"{_ascii(first)}.{_ascii(last)}.{number % 100000}@example.com"
        created = now - timedelta(days=6, hours=rng.randint(0, 48))
        # On time unless seeded late: `amends dev`'s first scan should find nothing to do.
        late = number in self.late
        eta = now - timedelta(days=2) if late else now + timedelta(days=2)
        carrier, tracking_url = rng.choice(CARRIERS)
        tracking_number = f"1Z{rng.randint(10**9, 10**10 - 1)}"
        amount = f"{rng.randint(20, 240)}.00"
        order_gid = gid("Order", number)
        consent = rng.choice(CONSENT)
        customer: dict[str, Any] = {
            "__typename": "Customer",
            "id": gid("Customer", customer_number),
            "legacyResourceId": str(customer_number),
            "firstName": first,
            "lastName": last,
            "displayName": f"{first} {last}",
            "email": email,
            "phone": None,
            "locale": rng.choice(LOCALES),
            "tags": [],
            "numberOfOrders": str(rng.randint(1, 9)),
            "emailMarketingConsent": {
                "__typename": "CustomerEmailMarketingConsentState",
                "marketingState": consent,
                "marketingOptInLevel": "SINGLE_OPT_IN" if consent == "SUBSCRIBED" else None,
                "consentUpdatedAt": iso(created),
            },
            "defaultEmailAddress": {
                "__typename": "CustomerEmailAddress",
                "emailAddress": email,
                "marketingState": consent,
            },
        }
        fulfillment_number = 4_000_000_000 + number % 1_000_000_000
        events = [
            {
                "__typename": "FulfillmentEvent",
                "id": gid("FulfillmentEvent", fulfillment_number * 10 + i),
                "status": status,
                "happenedAt": iso(created + timedelta(days=1 + i)),
                "message": status.replace("_", " ").capitalize(),
                "estimatedDeliveryAt": iso(eta),
            }
            for i, status in enumerate(("CONFIRMED", "IN_TRANSIT"))
        ]
        fulfillment = {
            "__typename": "Fulfillment",
            "id": gid("Fulfillment", fulfillment_number),
            "legacyResourceId": str(fulfillment_number),
            "name": f"#{1000 + number % 9000}-F1",
            "status": "SUCCESS",
            "displayStatus": "IN_TRANSIT",
            "createdAt": iso(created + timedelta(hours=20)),
            "updatedAt": iso(created + timedelta(days=2)),
            "inTransitAt": iso(created + timedelta(days=2)),
            "deliveredAt": None,
            "estimatedDeliveryAt": iso(eta),
            "trackingInfo": [
                {
                    "__typename": "FulfillmentTrackingInfo",
                    "company": carrier,
                    "number": tracking_number,
                    "url": tracking_url + tracking_number,
                }
            ],
            "events": events,
            "order": {"__typename": "Order", "id": order_gid},
        }
        line_item = {
            "__typename": "LineItem",
            "id": gid("LineItem", number * 10 + 1),
            "name": "Merino Crew Sweater - M",
            "title": "Merino Crew Sweater",
            "variantTitle": "M",
            "sku": "MCS-M",
            "quantity": 1,
            "originalUnitPriceSet": money(amount, self.currency),
            "image": None,
        }
        return {
            "__typename": "Order",
            "id": order_gid,
            "legacyResourceId": str(number),
            "name": f"#{1000 + number % 9000}",
            "email": email,
            "phone": None,
            "customerLocale": customer["locale"],
            "createdAt": iso(created),
            "processedAt": iso(created),
            "updatedAt": iso(created + timedelta(days=2)),
            "cancelledAt": None,
            "closed": False,
            "confirmed": True,
            "test": False,
            "note": None,
            "tags": list(self.tags.get(order_gid, [])),
            "currencyCode": self.currency,
            "presentmentCurrencyCode": self.currency,
            "displayFinancialStatus": "PAID",
            "displayFulfillmentStatus": "FULFILLED",
            "statusPageUrl": f"https://{self.domain}/orders/{number}/authenticate",
            "totalPriceSet": money(amount, self.currency),
            "currentTotalPriceSet": money(amount, self.currency),
            "subtotalPriceSet": money(amount, self.currency),
            "customer": customer,
            "shippingAddress": {
                "__typename": "MailingAddress",
                "firstName": first,
                "lastName": last,
                "name": f"{first} {last}",
                "city": "Ottawa",
                "province": "Ontario",
                "country": "Canada",
                "countryCodeV2": "CA",
                "zip": "K2P 1L4",
            },
            "shippingLine": {"__typename": "ShippingLine", "title": "Standard", "code": "STANDARD"},
            "lineItems": [line_item],
            "fulfillments": [fulfillment],
            "fulfillmentOrders": [
                {
                    "__typename": "FulfillmentOrder",
                    "id": gid("FulfillmentOrder", fulfillment_number),
                    "status": "CLOSED",
                    "deliveryMethod": {
                        "__typename": "DeliveryMethod",
                        "methodType": "SHIPPING",
                        "minDeliveryDateTime": iso(eta - timedelta(days=1)),
                        "maxDeliveryDateTime": iso(eta),
                    },
                    "order": {"__typename": "Order", "id": order_gid},
                }
            ],
        }

    def shipments(self) -> list[int]:
        """Order ids with open shipments, in the order the scan pages through them."""
        if self.open_shipments is None:
            base = 5_100_000_000_000 + (sum(self.domain.encode()) % 1000) * 1000
            return [base + i for i in range(6)]
        return self.open_shipments

    def seed_orders(self, count: int, late_every: int = 2, start: int = 5_200_000_000_000) -> list[int]:
        """`count` open shipments; every `late_every`-th one is past its estimated delivery."""
        self.open_shipments = [start + i for i in range(count)]
        self.late = {n for i, n in enumerate(self.open_shipments) if late_every and i % late_every == 0}
        return list(self.open_shipments)

    def add_tags(self, node_id: str, tags: list[str]) -> None:
        current = self.tags.setdefault(node_id, [])
        current.extend(t for t in tags if t not in current)

    # -- discounts ------------------------------------------------------------------------

    def create_discount(self, kind: str, argument: str, data: dict[str, Any]) -> dict[str, Any]:
        """The payload of discountCodeBasicCreate / discountCodeFreeShippingCreate."""
        code = str(data.get("code") or "").strip()
        errors = []
        if not code:
            errors.append(_user_error([argument, "code"], "Code can't be blank", "BLANK"))
        elif code.lower() in self.discounts:
            errors.append(
                _user_error([argument, "code"], "Code must be unique. Please try a different code.", "TAKEN")
            )
        if not data.get("title"):
            errors.append(_user_error([argument, "title"], "Title can't be blank", "BLANK"))
        if not data.get("startsAt"):
            errors.append(_user_error([argument, "startsAt"], "Starts at can't be blank", "BLANK"))
        gets = data.get("customerGets") if kind == "DiscountCodeBasic" else None
        if kind == "DiscountCodeBasic":
            value = (gets or {}).get("value") or {}
            percentage = value.get("percentage")
            if not value:
                errors.append(_user_error([argument, "customerGets"], "Value can't be blank", "BLANK"))
            elif percentage is not None and not 0 < float(percentage) <= 1:
                errors.append(
                    _user_error(
                        [argument, "customerGets", "value", "percentage"],
                        "Value must be between 0.0 and 1.0",
                        "VALUE_OUTSIDE_RANGE",
                    )
                )
        if errors:
            return {"__typename": "Payload", "codeDiscountNode": None, "userErrors": errors}

        number = self.next_id()
        node = {
            "__typename": "DiscountCodeNode",
            "id": gid("DiscountCodeNode", number),
            "codeDiscount": {
                "__typename": kind,
                "title": data.get("title"),
                "status": "ACTIVE",
                "startsAt": data.get("startsAt"),
                "endsAt": data.get("endsAt"),
                "usageLimit": data.get("usageLimit"),
                "appliesOncePerCustomer": bool(data.get("appliesOncePerCustomer")),
                "asyncUsageCount": 0,
                "createdAt": iso(datetime.now(UTC)),
                "summary": data.get("title"),
                "codes": [
                    {
                        "__typename": "DiscountRedeemCode",
                        "id": gid("DiscountRedeemCode", number),
                        "code": code,
                        "asyncUsageCount": 0,
                    }
                ],
                "codesCount": {"__typename": "Count", "count": 1, "precision": "EXACT"},
                "customerGets": _customer_gets(gets, self.currency) if gets else None,
                "context": _context(data.get("context")),
                "combinesWith": {"__typename": "DiscountCombinesWith", **(data.get("combinesWith") or {})},
                "minimumRequirement": data.get("minimumRequirement"),
            },
        }
        self.discounts[code.lower()] = node
        self.discount_log.append({"id": node["id"], "code": code, "kind": kind, "input": data})
        return {"__typename": "Payload", "codeDiscountNode": node, "userErrors": []}

    def discount_by_id(self, node_id: Any) -> dict[str, Any] | None:
        return next((n for n in self.discounts.values() if n["id"] == node_id), None)

    # -- webhook subscriptions ------------------------------------------------------------

    def create_webhook(self, topic: Any, data: dict[str, Any]) -> dict[str, Any]:
        uri = data.get("uri") or data.get("callbackUrl")
        if not uri:
            error = _user_error(["webhookSubscription", "callbackUrl"], "Address can't be blank", "BLANK")
            return {"__typename": "Payload", "webhookSubscription": None, "userErrors": [error]}
        if any(w["topic"] == topic and w["uri"] == uri for w in self.webhooks):
            error = _user_error(
                ["webhookSubscription", "callbackUrl"],
                "Address for this topic has already been taken",
                "TAKEN",
            )
            return {"__typename": "Payload", "webhookSubscription": None, "userErrors": [error]}
        subscription = {
            "__typename": "WebhookSubscription",
            "id": gid("WebhookSubscription", self.next_id()),
            "topic": topic,
            "uri": uri,
            "callbackUrl": uri,
            "format": data.get("format") or "JSON",
            "filter": data.get("filter"),
            "includeFields": data.get("includeFields") or [],
            "apiVersion": {"__typename": "ApiVersion", "handle": "2026-07"},
            "endpoint": {"__typename": "WebhookHttpEndpoint", "callbackUrl": uri},
            "createdAt": iso(datetime.now(UTC)),
        }
        self.webhooks.append(subscription)
        return {"__typename": "Payload", "webhookSubscription": subscription, "userErrors": []}


def _ascii(name: str) -> str:
    return name.lower().translate(str.maketrans("éü-", "eu_")).replace("_", "")


def _user_error(field: list[str], message: str, code: str) -> dict[str, Any]:
    return {"__typename": "DiscountUserError", "field": field, "message": message, "code": code}


def _customer_gets(gets: dict[str, Any], currency: str) -> dict[str, Any]:
    value = gets.get("value") or {}
    if "percentage" in value:
        answer: dict[str, Any] = {
            "__typename": "DiscountPercentage",
            "percentage": float(value["percentage"]),
        }
    elif "discountAmount" in value:
        amount = value["discountAmount"] or {}
        answer = {
            "__typename": "DiscountAmount",
            "amount": {
                "__typename": "MoneyV2",
                "amount": str(amount.get("amount")),
                "currencyCode": currency,
            },
            "appliesOnEachItem": bool(amount.get("appliesOnEachItem")),
        }
    else:
        answer = {"__typename": "DiscountOnQuantity"}
    return {
        "__typename": "DiscountCustomerGets",
        "value": answer,
        "items": {"__typename": "AllDiscountItems", "allItems": True},
        "appliesOnOneTimePurchase": True,
        "appliesOnSubscription": False,
    }


def _context(context: Any) -> dict[str, Any]:
    if isinstance(context, dict) and isinstance(context.get("customers"), dict):
        ids = context["customers"].get("add") or []
        return {
            "__typename": "DiscountCustomers",
            "customers": [{"__typename": "Customer", "id": customer} for customer in ids],
        }
    return {"__typename": "DiscountBuyerSelection", "all": "ALL"}
