"""Shopify's Admin GraphQL API for the action tests, on `responses`.

The fake checks what Shopify would check — the access token, the API version in the URL, the
document and its variables against Shopify's schema — and keeps the discounts it created, so a
second create of the same code answers `TAKEN` exactly as Shopify does, and
`codeDiscountNodeByCode` finds it. Scripted answers (`fail_next`) stand in for throttling and
outages. Every request is recorded for the tests' assertions.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import responses
from graphql import OperationDefinitionNode, parse

from plugin.config import SHOPIFY_API_VERSION
from tests.factories import SHOP
from tests.graphql_schema import assert_valid_where_available

Answer = tuple[int, dict[str, str], dict[str, Any]]


@dataclass
class Call:
    operation: str  # the root field: "discountCodeBasicCreate", "tagsAdd", "order", …
    document: str
    variables: dict[str, Any]
    token: str | None


@dataclass
class FakeAdmin:
    shop: str = SHOP
    token: str = "shpat_test_token"
    calls: list[Call] = field(default_factory=list)
    discounts: dict[str, dict[str, Any]] = field(default_factory=dict)  # code → {id, title, input}
    tags: dict[int, set[str]] = field(default_factory=dict)
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)  # order id → `order` JSON
    _scripted: dict[str, list[Answer | Callable[[Call], Answer]]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1001))
    available: float = 1990.0

    @property
    def url(self) -> str:
        return f"https://{self.shop}/admin/api/{SHOPIFY_API_VERSION}/graphql.json"

    def install(self, mock: responses.RequestsMock) -> FakeAdmin:
        mock.add_callback(responses.POST, self.url, callback=self._handle, content_type="application/json")
        return self

    # -- scripting -----------------------------------------------------------------------------

    def fail_next(self, operation: str, answer: Answer | Callable[[Call], Answer], times: int = 1) -> None:
        """The next `times` calls of `operation` get `answer` (status, headers, body) instead."""
        self._scripted.setdefault(operation, []).extend([answer] * times)

    @staticmethod
    def throttled(available: float = 2.0, restore_rate: float = 100.0) -> Answer:
        return (
            200,
            {},
            {
                "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                "extensions": {"cost": _cost(10, 0, available, restore_rate)},
            },
        )

    @staticmethod
    def server_error(status: int = 503, retry_after: str | None = "60") -> Answer:
        return (
            status,
            ({"Retry-After": retry_after} if retry_after else {}),
            {"errors": "Service Unavailable"},
        )

    @staticmethod
    def user_errors(operation: str, *errors: dict[str, Any]) -> Answer:
        return 200, {}, {"data": {operation: {"codeDiscountNode": None, "userErrors": list(errors)}}}

    # -- what the tests read -------------------------------------------------------------------

    def of(self, *operations: str) -> list[Call]:
        return [c for c in self.calls if c.operation in operations]

    @property
    def discount_mutations(self) -> list[Call]:
        return self.of("discountCodeBasicCreate", "discountCodeFreeShippingCreate")

    # -- the fake ------------------------------------------------------------------------------

    def _handle(self, request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        document, variables = body["query"], body.get("variables") or {}
        assert_valid_where_available(document, variables)
        operation = _root_field(document)
        call = Call(operation, document, variables, request.headers.get("X-Shopify-Access-Token"))
        self.calls.append(call)
        if call.token != self.token:
            return 401, {}, json.dumps({"errors": "[API] Invalid API key or access token"})
        scripted = self._scripted.get(operation)
        if scripted:
            answer = scripted.pop(0)
            status, headers, payload = answer(call) if callable(answer) else answer
            return status, headers, json.dumps(payload)
        data = self._answer(call)
        payload = {"data": data, "extensions": {"cost": _cost(10, 10, self.available, 100.0)}}
        return 200, {}, json.dumps(payload)

    def _answer(self, call: Call) -> dict[str, Any]:
        if call.operation in ("discountCodeBasicCreate", "discountCodeFreeShippingCreate"):
            discount = call.variables["discount"]
            code = discount["code"]
            if code in self.discounts:
                error = {
                    "code": "TAKEN",
                    "field": ["basicCodeDiscount", "code"],
                    "message": "Code must be unique.",
                }
                return {call.operation: {"codeDiscountNode": None, "userErrors": [error]}}
            gid = f"gid://shopify/DiscountCodeNode/{next(self._ids)}"
            kind = (
                "DiscountCodeBasic"
                if call.operation == "discountCodeBasicCreate"
                else "DiscountCodeFreeShipping"
            )
            self.discounts[code] = {
                "id": gid,
                "title": discount["title"],
                "typename": kind,
                "input": discount,
            }
            return {call.operation: {"codeDiscountNode": {"id": gid}, "userErrors": []}}
        if call.operation == "codeDiscountNodeByCode":
            found = self.discounts.get(call.variables["code"])
            if found is None:
                return {"codeDiscountNodeByCode": None}
            return {
                "codeDiscountNodeByCode": {
                    "id": found["id"],
                    "codeDiscount": {"__typename": found["typename"], "title": found["title"]},
                }
            }
        if call.operation == "tagsAdd":
            order_id = int(call.variables["id"].rsplit("/", 1)[-1])
            self.tags.setdefault(order_id, set()).update(call.variables["tags"])
            return {"tagsAdd": {"node": {"id": call.variables["id"]}, "userErrors": []}}
        if call.operation == "order":
            order_id = int(call.variables["id"].rsplit("/", 1)[-1])
            return {"order": self.orders.get(order_id)}
        if call.operation == "orders":  # the late-delivery scan (a periodic job): no open shipments
            return {"orders": {"pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": []}}
        raise AssertionError(f"the fake Admin API does not know {call.operation}")


def _root_field(document: str) -> str:
    for definition in parse(document).definitions:
        if isinstance(definition, OperationDefinitionNode):
            return definition.selection_set.selections[0].name.value  # type: ignore[attr-defined]
    raise AssertionError("no operation in the document")


def _cost(requested: float, actual: float, available: float, restore_rate: float) -> dict[str, Any]:
    return {
        "requestedQueryCost": requested,
        "actualQueryCost": actual,
        "throttleStatus": {
            "maximumAvailable": 2000.0,
            "currentlyAvailable": available,
            "restoreRate": restore_rate,
        },
    }


def order_json(
    order_id: int,
    *,
    name: str = "#1001",
    customer_id: int | None = 7_000_000_001,
    first_name: str | None = "Jane",
    email: str | None = "jane@example.test",
    consent: str | None = "SUBSCRIBED",
) -> dict[str, Any]:
    """The `order` of the intake's order-context query, with Shopify's field names."""
    customer = None
    if customer_id is not None:
        customer = {
            "id": f"gid://shopify/Customer/{customer_id}",
            "firstName": first_name,
            "email": email,
            "locale": "en",
            "emailMarketingConsent": {"marketingState": consent} if consent else None,
        }
    return {
        "id": f"gid://shopify/Order/{order_id}",
        "name": name,
        "email": email,
        "customerLocale": "en",
        "displayFulfillmentStatus": "FULFILLED",
        "customer": customer,
        "fulfillments": [],
    }
