"""The stand-in's HTTP side and its Python handle.

Routes (any shop; the shop is the path segment after /shops/):
  POST /shops/{shop}/admin/api/{version}/graphql.json   the GraphQL Admin API
  POST /shops/{shop}/admin/oauth/access_token           code, token-exchange and refresh grants
  GET  /_stats   POST /_reset   POST /_config   POST /_fail_next   POST /_seed
  GET  /_discounts?shop=…   GET /healthz

Point Amends at it with SHOPIFY_ADMIN_BASE_URL=http://127.0.0.1:PORT/shops/{shop}.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

from graphql.error import GraphQLSyntaxError
from graphql.language import DocumentNode, FieldNode, FragmentDefinitionNode, OperationDefinitionNode, parse
from graphql.utilities import value_from_ast_untyped

from plugin.standin import cost, oauth
from plugin.standin.graph import Projector
from plugin.standin.http import Handler
from plugin.standin.resolvers import MUTATIONS, QUERIES
from plugin.standin.shop import ShopState

log = logging.getLogger(__name__)

FAULT_KINDS = ("500", "502", "503", "429", "throttled", "drop", "500_after")
TOKEN_LIFETIME = 3600


@dataclass
class Settings:
    latency: float = 0.0  # seconds added to every Admin API call
    plan: str = "standard"
    faults: dict[str, float] = field(default_factory=dict)  # kind → fraction of calls
    retry_after: float = 1.0
    token_lifetime: float = TOKEN_LIFETIME
    bulk_seconds: float = 0.5  # how long a bulk operation runs before its lines do


@dataclass
class Call:
    """One GraphQL call as the stand-in saw it (the last 10,000 are kept)."""

    shop: str
    operation: str
    root_fields: list[str]
    variables: dict[str, Any]
    status: int
    outcome: str  # ok, throttled, fault:<kind>, unauthorized, error
    requested: float = 0.0
    actual: float = 0.0
    at: float = field(default_factory=time.time)


class StandIn:
    """A local Shopify Admin API: `with StandIn(latency=0.1) as shopify: …`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        plan: str = "standard",
        seed: int | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
    ):
        if plan not in cost.PLANS:
            raise ValueError(f"unknown plan {plan!r}; one of {', '.join(cost.PLANS)}")
        self.host = host
        self.settings = Settings(latency=latency, plan=plan)
        self.client_id = client_id
        self.client_secret = client_secret
        self._random = random.Random(seed)  # noqa: S311 - fault sampling, not secrets
        self._lock = threading.RLock()
        self._shops: dict[str, ShopState] = {}
        self._fail_next: deque[str] = deque()
        self._documents: dict[str, DocumentNode] = {}
        self.calls: deque[Call] = deque(maxlen=10_000)
        self._reset_counters()
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._server.standin = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    # -- life -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def admin_base(self) -> str:
        """The value for SHOPIFY_ADMIN_BASE_URL / Config.shopify_admin_base."""
        return f"{self.url}/shops/{{shop}}"

    def start(self) -> StandIn:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="shopify-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control --------------------------------------------------------------------------

    def shop(self, domain: str) -> ShopState:
        with self._lock:
            if domain not in self._shops:
                state = ShopState(domain, cost.PLANS[self.settings.plan])
                state.upload_url = f"{self.url}/shops/{domain}"
                self._shops[domain] = state
            return self._shops[domain]

    def configure(self, **changes: Any) -> None:
        """Change settings: latency, plan, faults ({"503": 0.05, …}), retry_after, token_lifetime."""
        with self._lock:
            for name, value in changes.items():
                if not hasattr(self.settings, name):
                    raise ValueError(f"unknown setting {name!r}")
                if name == "faults":
                    unknown = set(value) - set(FAULT_KINDS)
                    if unknown:
                        raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
                    value = {k: float(v) for k, v in value.items()}
                if name == "plan":
                    if value not in cost.PLANS:
                        raise ValueError(f"unknown plan {value!r}")
                    for state in self._shops.values():
                        state.set_plan(value)
                if name in ("latency", "retry_after", "token_lifetime", "bulk_seconds"):
                    value = float(value)
                setattr(self.settings, name, value)

    def fail_next(self, kind: str, times: int = 1) -> None:
        """The next `times` GraphQL calls fail this way (see FAULT_KINDS)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {FAULT_KINDS}")
        with self._lock:
            self._fail_next.extend([kind] * times)

    def reset(self) -> None:
        """Forget every shop, call and counter (settings stay)."""
        with self._lock:
            self._shops.clear()
            self._fail_next.clear()
            self.calls.clear()
            self._reset_counters()

    def _reset_counters(self) -> None:
        self.started = time.time()
        self.counts: Counter[str] = Counter()
        self.fields: Counter[str] = Counter()
        self.mutation_counts: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.unknown_fields: Counter[str] = Counter()
        self.points_requested = 0.0
        self.points_spent = 0.0
        # Actual points by the document's first root field: where a shop's budget goes.
        self.field_points: defaultdict[str, float] = defaultdict(float)
        self.shop_points: defaultdict[str, float] = defaultdict(float)
        self.shop_calls: Counter[str] = Counter()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            shops = {}
            for domain, state in self._shops.items():
                with state.lock:
                    taken = sum(1 for c in self.calls if c.shop == domain and c.outcome == "taken")
                    shops[domain] = {
                        "calls": self.shop_calls[domain],
                        "points_spent": self.shop_points[domain],
                        "available": round(state.bucket.available, 1),
                        "plan": state.bucket.plan.name,
                        "discounts_created": len(state.discount_log),
                        "taken_in_recent_calls": taken,
                        "tags": sum(len(t) for t in state.tags.values()),
                        "webhook_subscriptions": len(state.webhooks),
                    }
            return {
                "since": self.started,
                "elapsed": time.time() - self.started,
                "settings": asdict(self.settings),
                "calls": self.counts["graphql"],
                "oauth_calls": self.counts["oauth"],
                "executed": self.counts["executed"],
                "throttled": self.counts["throttled"],
                "max_cost_exceeded": self.counts["max_cost_exceeded"],
                "unauthorized": self.counts["unauthorized"],
                "errors": self.counts["errors"],
                "taken": self.counts["taken"],
                "bulk_lines": self.counts["bulk_lines"],
                "faults": dict(self.faults),
                "root_fields": dict(self.fields),
                "mutations": dict(self.mutation_counts),
                "mutations_total": sum(self.mutation_counts.values()),
                "unknown_fields": dict(self.unknown_fields),
                "points_requested": self.points_requested,
                "points_spent": self.points_spent,
                "points_by_root_field": dict(self.field_points),
                "shops": shops,
            }

    def discounts(self, domain: str) -> list[dict[str, Any]]:
        state = self.shop(domain)
        with state.lock:
            return [dict(entry) for entry in state.discount_log]

    def mutation_calls(self, name: str | None = None, shop: str | None = None) -> list[Call]:
        """Executed mutation calls (all of the last 10,000 calls), optionally one root field."""
        with self._lock:
            return [
                c
                for c in self.calls
                if c.operation == "mutation"
                and c.outcome in ("ok", "taken", "user_errors")
                and (name is None or name in c.root_fields)
                and (shop is None or c.shop == shop)
            ]

    # -- the Admin API --------------------------------------------------------------------

    def graphql(
        self, shop: str, body: Mapping[str, Any], token: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """One Admin API call: (status, JSON body, extra headers). Sleeps the latency."""
        half = self.settings.latency / 2
        if half:
            time.sleep(half)
        state = self.shop(shop)
        with self._lock:
            self.counts["graphql"] += 1
            self.shop_calls[shop] += 1
            fault = self._fault()
        status, answer, headers, call = self._graphql(state, body, token, fault)
        with self._lock:
            self.calls.append(call)
        with state.lock:
            started, state.bulk_to_run = state.bulk_to_run, []
        for number in started:
            threading.Thread(target=self._run_bulk, args=(state, number), daemon=True).start()
        if half:
            time.sleep(half)
        return status, answer, headers

    # -- bulk mutations ---------------------------------------------------------------------

    def stage(self, shop: str, key: str, content: bytes) -> None:
        """A file POSTed to the staged-upload URL."""
        state = self.shop(shop)
        with state.lock:
            state.staged[key] = content

    def bulk_results(self, shop: str, number: int) -> str | None:
        state = self.shop(shop)
        with state.lock:
            operation = state.bulk_operations.get(number)
            return operation.get("_results") if operation else None

    def _run_bulk(self, state: ShopState, number: int) -> None:
        """Shopify's side of a bulk mutation: after a while, the mutation once per line (no
        points taken: the operation cost its own call), then a results file."""
        time.sleep(self.settings.bulk_seconds)
        with state.lock:
            operation = state.bulk_operations[number]
            operation["status"] = "RUNNING"
            query, lines = operation["query"], operation["_lines"]
        results: list[dict[str, Any]] = []
        try:
            document = self._parse(query)
            definition = _operation(document, None)
            if definition is None or definition.operation.value != "mutation":
                raise ValueError("not a mutation")
            fragments = {
                d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
            }
            roots = cost.fields_of(definition.selection_set, fragments)
            if len(roots) != 1 or roots[0].name.value not in MUTATIONS:
                raise ValueError("one known mutation field expected")
        except (GraphQLSyntaxError, ValueError):
            with state.lock:
                operation.update(status="FAILED", errorCode="INTERNAL_SERVER_ERROR")
            return
        root = roots[0]
        key = root.alias.value if root.alias else root.name.value
        for line_number, text in enumerate(lines):
            try:
                variables = json.loads(text)
                if not isinstance(variables, dict):
                    raise ValueError
            except ValueError:
                results.append(
                    {"errors": [{"message": "Invalid JSON on this line"}], "__lineNumber": line_number}
                )
                continue
            variables = {**_defaults(definition), **variables}
            with state.lock:
                raw = MUTATIONS[root.name.value](state, cost.arguments(root, variables))
                data = {key: Projector(fragments, variables).value(raw, root)}
            results.append({"data": data, "__lineNumber": line_number})
            with self._lock:
                self.mutation_counts[root.name.value] += 1
                self.counts["bulk_lines"] += 1
        with state.lock:
            operation.update(
                status="COMPLETED",
                objectCount=str(len(lines)),
                url=f"{state.upload_url}/_bulk_results/{number}.jsonl" if results else None,
                _results="".join(json.dumps(r) + "\n" for r in results),
            )

    def _fault(self) -> str | None:
        if self._fail_next:
            return self._fail_next.popleft()
        for kind, fraction in self.settings.faults.items():
            if fraction > 0 and self._random.random() < fraction:
                return kind
        return None

    def _graphql(
        self, state: ShopState, body: Mapping[str, Any], token: str | None, fault: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str], Call]:
        shop = state.domain
        query = body.get("query")
        variables = body.get("variables") or {}
        call = Call(shop, "?", [], variables if isinstance(variables, dict) else {}, 200, "ok")

        if not oauth.token_ok(state, token):
            with self._lock:
                self.counts["unauthorized"] += 1
            call.status, call.outcome = 401, "unauthorized"
            message = "[API] Invalid API key or access token (unrecognized login or wrong password)"
            return 401, {"errors": message}, {}, call

        if fault in ("500", "502", "503", "429"):
            with self._lock:
                self.faults[fault] += 1
            call.status, call.outcome = int(fault), f"fault:{fault}"
            headers = {"Retry-After": f"{self.settings.retry_after:g}"} if fault in ("429", "503") else {}
            return int(fault), {"errors": _REASONS[fault]}, headers, call
        if fault == "drop":
            with self._lock:
                self.faults[fault] += 1
            call.status, call.outcome = 0, "fault:drop"
            return 0, {}, {}, call

        if not isinstance(query, str) or not isinstance(variables, dict):
            return self._error(call, state, "Parameter 'query' is required and 'variables' must be an object")
        try:
            document = self._parse(query)
        except GraphQLSyntaxError as error:
            return self._error(call, state, error.message, locations=error.locations)
        operation = _operation(document, body.get("operationName"))
        if operation is None:
            return self._error(call, state, "No operation named in the document")
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        variables = {**_defaults(operation), **variables}
        kind = operation.operation.value  # "query" or "mutation"
        call.operation = kind
        roots = cost.fields_of(operation.selection_set, fragments)
        call.root_fields = [r.name.value for r in roots]
        table = MUTATIONS if kind == "mutation" else QUERIES
        unknown = [r for r in roots if r.name.value not in table and r.name.value != "__typename"]
        if kind not in ("query", "mutation") or unknown:
            type_name = "Mutation" if kind == "mutation" else "QueryRoot"
            errors = [_undefined_field(r, type_name) for r in unknown] or [
                {"message": f"{kind} operations are not supported by the stand-in"}
            ]
            with self._lock:
                self.counts["errors"] += 1
                for r in unknown:
                    self.unknown_fields[f"{type_name}.{r.name.value}"] += 1
            call.outcome = "error"
            return 200, {"errors": errors, "extensions": self._cost_extension(state, 0, 0)}, {}, call

        requested = cost.requested_cost(kind, roots, fragments, variables)
        call.requested = requested
        if requested > cost.MAX_QUERY_COST:
            with self._lock:
                self.counts["max_cost_exceeded"] += 1
            call.outcome = "max_cost_exceeded"
            problem = {
                "message": f"Query cost is {requested:g}, which exceeds the single query max cost limit "
                f"({cost.MAX_QUERY_COST}).",
                "extensions": {
                    "code": "MAX_COST_EXCEEDED",
                    "cost": requested,
                    "maxCost": cost.MAX_QUERY_COST,
                },
            }
            return (
                200,
                {"errors": [problem], "extensions": self._cost_extension(state, requested, None)},
                {},
                call,
            )

        if fault == "throttled" or not state.bucket.take(requested):
            with self._lock:
                self.counts["throttled"] += 1
                if fault == "throttled":
                    self.faults[fault] += 1
            call.outcome = "throttled"
            throttled = {
                "message": "Throttled",
                "extensions": {
                    "code": "THROTTLED",
                    "documentation": "https://shopify.dev/api/usage/rate-limits",
                },
            }
            return (
                200,
                {"errors": [throttled], "extensions": self._cost_extension(state, requested, None)},
                {},
                call,
            )

        projector = Projector(fragments, variables)
        data: dict[str, Any] = {}
        with state.lock:
            for root in roots:
                key = root.alias.value if root.alias else root.name.value
                if root.name.value == "__typename":
                    data[key] = "Mutation" if kind == "mutation" else "QueryRoot"
                    continue
                raw = table[root.name.value](state, cost.arguments(root, variables))
                data[key] = projector.value(raw, root)
        actual = cost.actual_cost(kind, roots, fragments, variables, data)
        state.bucket.refund(requested - actual)
        call.actual = actual
        user_errors = [
            e for answer in data.values() if isinstance(answer, dict) for e in answer.get("userErrors") or []
        ]
        if user_errors:
            call.outcome = "taken" if any(e.get("code") == "TAKEN" for e in user_errors) else "user_errors"
        with self._lock:
            self.counts["executed"] += 1
            self.counts["taken"] += 1 if call.outcome == "taken" else 0
            self.points_requested += requested
            self.points_spent += actual
            if call.root_fields:
                self.field_points[call.root_fields[0]] += actual
            self.shop_points[state.domain] += actual
            for name in call.root_fields:
                self.fields[name] += 1
                if kind == "mutation":
                    self.mutation_counts[name] += 1
            for name in projector.unknown:
                self.unknown_fields[name] += 1
        answer = {"data": data, "extensions": self._cost_extension(state, requested, actual)}
        if fault == "500_after":
            # The call took effect, but the answer is lost on the way back.
            with self._lock:
                self.faults[fault] += 1
            call.status = 500
            return 500, {"errors": _REASONS["500"]}, {}, call
        return 200, answer, {}, call

    def _error(
        self, call: Call, state: ShopState, message: str, locations: Any = None
    ) -> tuple[int, dict[str, Any], dict[str, str], Call]:
        with self._lock:
            self.counts["errors"] += 1
        call.outcome = "error"
        error: dict[str, Any] = {"message": message}
        if locations:
            error["locations"] = [{"line": loc.line, "column": loc.column} for loc in locations]
        return 200, {"errors": [error], "extensions": self._cost_extension(state, 0, 0)}, {}, call

    def _cost_extension(self, state: ShopState, requested: float, actual: float | None) -> dict[str, Any]:
        return {
            "cost": {
                "requestedQueryCost": _whole(requested),
                "actualQueryCost": None if actual is None else _whole(actual),
                "throttleStatus": state.bucket.status(),
            }
        }

    def _parse(self, query: str) -> DocumentNode:
        document = self._documents.get(query)
        if document is None:
            document = parse(query, no_location=False)
            with self._lock:
                if len(self._documents) > 512:
                    self._documents.clear()
                self._documents[query] = document
        return document

    # -- tokens ---------------------------------------------------------------------------

    def set_tokens(self, domain: str, tokens: set[str] | None) -> None:
        """Only these access tokens work for the shop (None: any non-empty token)."""
        state = self.shop(domain)
        with state.lock:
            state.valid_tokens = None if tokens is None else set(tokens)
            state.token_expiry = {}

    def expire_token(self, domain: str, token: str) -> None:
        state = self.shop(domain)
        with state.lock:
            state.token_expiry[token] = 0.0

    def authorize(self, domain: str, query: Mapping[str, str]) -> tuple[int, str]:
        return oauth.authorize(domain, query, self.client_id, self.client_secret)

    def token_grant(self, domain: str, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.counts["oauth"] += 1
        return oauth.grant(
            self.shop(domain), form, self.client_id, self.client_secret, self.settings.token_lifetime
        )


_REASONS = {
    "500": "Internal Server Error",
    "502": "Bad Gateway",
    "503": "Service Unavailable",
    "429": "Exceeded the rate limit for api client. Reduce request rates to resume uninterrupted service.",
}


def _whole(points: float) -> float | int:
    return int(points) if float(points).is_integer() else points


def _operation(document: DocumentNode, name: Any) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name:
        return next((o for o in operations if o.name and o.name.value == name), None)
    return operations[0] if len(operations) == 1 else None


def _defaults(operation: OperationDefinitionNode) -> dict[str, Any]:
    return {
        d.variable.name.value: value_from_ast_untyped(d.default_value, {})
        for d in operation.variable_definitions or ()
        if d.default_value is not None
    }


def _undefined_field(field_node: FieldNode, type_name: str) -> dict[str, Any]:
    name = field_node.name.value
    error: dict[str, Any] = {
        "message": f"Field '{name}' doesn't exist on type '{type_name}' (not answered by the stand-in)",
        "path": ["mutation" if type_name == "Mutation" else "query", name],
        "extensions": {"code": "undefinedField", "typeName": type_name, "fieldName": name},
    }
    if field_node.loc is not None:
        where = field_node.loc.source.get_location(field_node.loc.start)
        error["locations"] = [{"line": where.line, "column": where.column}]
    return error
