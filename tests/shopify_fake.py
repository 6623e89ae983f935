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
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default as default_policy
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
    # Bulk mutations: staged uploads by key, operations by id, how many status queries an
    # operation answers RUNNING before it ends, how it ends, and orders whose tag is refused.
    staged: dict[str, bytes] = field(default_factory=dict)
    uploads: list[bytes] = field(default_factory=list)  # every file uploaded, in order
    bulk: dict[str, dict[str, Any]] = field(default_factory=dict)
    bulk_polls_before_done: int = 1
    bulk_ends: str = "COMPLETED"
    bulk_answers_lines: bool = True  # False: a COMPLETED operation whose results miss lines
    refuse_tags: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"https://{self.shop}/admin/api/{SHOPIFY_API_VERSION}/graphql.json"

    @property
    def upload_url(self) -> str:
        return "https://shopify-staged-uploads.storage.googleapis.com/"

    def results_url(self, number: str) -> str:
        return f"https://storage.googleapis.com/shopify-tiers-assets-prod-us-east1/bulk-{number}.jsonl"

    def install(self, mock: responses.RequestsMock) -> FakeAdmin:
        mock.add_callback(responses.POST, self.url, callback=self._handle, content_type="application/json")
        mock.add_callback(responses.POST, self.upload_url, callback=self._upload)
        mock.add_callback(
            responses.GET,
            re.compile(
                r"https://storage\.googleapis\.com/shopify-tiers-assets-prod-us-east1/bulk-\d+\.jsonl"
            ),
            callback=self._results,
        )
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
        if call.operation in ("stagedUploadsCreate", "bulkOperationRunMutation", "node"):
            return self._bulk_answer(call)
        if call.operation == "order":
            order_id = int(call.variables["id"].rsplit("/", 1)[-1])
            order = self.orders.get(order_id)
            if order and order.get("customer") and "emailMarketingConsent" not in call.document:
                # Shopify answers what was asked: the consent only when the document names it.
                customer = {k: v for k, v in order["customer"].items() if k != "emailMarketingConsent"}
                order = {**order, "customer": customer}
            return {"order": order}
        if call.operation == "orders":  # the late-delivery scan (a periodic job): no open shipments
            return {"orders": {"pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": []}}
        raise AssertionError(f"the fake Admin API does not know {call.operation}")

    # -- bulk mutations (plugin/shopify/bulk.py) -------------------------------------------------

    def _bulk_answer(self, call: Call) -> dict[str, Any]:
        if call.operation == "stagedUploadsCreate":
            (wanted,) = call.variables["input"]
            assert (wanted["resource"], wanted["httpMethod"]) == ("BULK_MUTATION_VARIABLES", "POST")
            key = f"tmp/{next(self._ids)}/bulk/{wanted['filename']}"
            parameters = [
                {"name": "Content-Type", "value": wanted["mimeType"]},
                {"name": "success_action_status", "value": "201"},
                {"name": "acl", "value": "private"},
                {"name": "key", "value": key},
                {"name": "policy", "value": "eyJjb25kaXRpb25zIjpbXX0="},
            ]
            target = {"url": self.upload_url, "parameters": parameters}
            return {"stagedUploadsCreate": {"stagedTargets": [target], "userErrors": []}}
        if call.operation == "bulkOperationRunMutation":
            path = call.variables["path"]
            running = [op for op in self.bulk.values() if op["status"] in ("CREATED", "RUNNING")]
            if path not in self.staged or running:
                message = "already in progress" if running else "invalid staged upload path"
                error = {"field": None, "message": f"A bulk mutation operation is {message}"}
                return {"bulkOperationRunMutation": {"bulkOperation": None, "userErrors": [error]}}
            number = str(next(self._ids))
            lines = self.staged.pop(path).decode().splitlines()
            operation = {
                "id": f"gid://shopify/BulkOperation/{number}",
                "status": "CREATED",
                "polls": 0,
                "results": self._run_lines(call.variables["mutation"], lines),
                "number": number,
            }
            self.bulk[operation["id"]] = operation
            return {
                "bulkOperationRunMutation": {
                    "bulkOperation": {"id": operation["id"], "status": "CREATED"},
                    "userErrors": [],
                }
            }
        operation = self.bulk.get(call.variables["id"])
        if operation is None:
            return {"node": None}
        operation["polls"] += 1
        done = operation["polls"] > self.bulk_polls_before_done
        operation["status"] = self.bulk_ends if done else "RUNNING"
        completed = operation["status"] == "COMPLETED"
        return {
            "node": {
                "id": operation["id"],
                "status": operation["status"],
                "errorCode": None if completed or not done else "INTERNAL_SERVER_ERROR",
                "objectCount": str(len(operation["results"])),
                "url": self.results_url(operation["number"]) if completed else None,
                "partialDataUrl": None,
            }
        }

    def _run_lines(self, mutation: str, lines: list[str]) -> list[dict[str, Any]]:
        """What Shopify does with each line: the mutation with those variables."""
        assert _root_field(mutation) == "tagsAdd", "the fake runs bulk tagsAdd only"
        results = []
        for number, line in enumerate(lines):
            variables = json.loads(line)
            assert_valid_where_available(mutation, variables)
            order_id = int(variables["id"].rsplit("/", 1)[-1])
            if order_id in self.refuse_tags:
                error = {"field": ["id"], "message": "Order does not exist"}
                payload: dict[str, Any] = {"node": None, "userErrors": [error]}
            else:
                self.tags.setdefault(order_id, set()).update(variables["tags"])
                payload = {"node": {"id": variables["id"]}, "userErrors": []}
            if self.bulk_answers_lines or number % 2 == 0:
                results.append({"data": {"tagsAdd": payload}, "__lineNumber": number})
        return results

    def _upload(self, request: Any) -> tuple[int, dict[str, str], str]:
        fields = _multipart(request.body, request.headers["Content-Type"])
        # Google's form upload reads the policy fields first: the file must come last.
        assert list(fields)[-1] == "file", list(fields)
        self.staged[fields["key"].decode()] = fields["file"]
        self.uploads.append(fields["file"])
        return 201, {}, ""

    def _results(self, request: Any) -> tuple[int, dict[str, str], str]:
        number = request.url.rsplit("bulk-", 1)[1].removesuffix(".jsonl")
        (operation,) = [op for op in self.bulk.values() if op["number"] == number]
        return 200, {}, "".join(json.dumps(line) + "\n" for line in operation["results"])


def _multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    message = BytesParser(policy=default_policy).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    return {
        str(part.get_param("name", header="content-disposition")): part.get_payload(decode=True)
        for part in message.iter_parts()
    }


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
