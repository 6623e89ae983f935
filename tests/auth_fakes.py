"""Shopify's side of installing and authenticating, for the auth tests: session tokens as
App Bridge sends them, query strings as Shopify signs them, and Shopify's token endpoint and
Admin API faked with `responses`, each recording exactly what Shopify would receive."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import jwt
import responses

from plugin.auth.query import signature
from plugin.config import SHOPIFY_API_VERSION
from tests.conftest import API_KEY, API_SECRET
from tests.factories import SHOP
from tests.graphql_schema import assert_valid_where_available

SCOPES = "read_orders,write_orders,read_returns,read_fulfillments,read_customers,write_discounts"
FORM = "application/x-www-form-urlencoded"


def session_token(
    shop: str = SHOP,
    *,
    secret: str = API_SECRET,
    aud: str = API_KEY,
    exp_in: float = 60,
    nbf_in: float = -5,
    iss: str | None = None,
    dest: str | None = None,
    drop: tuple[str, ...] = (),
    algorithm: str = "HS256",
) -> str:
    now = time.time()
    claims: dict[str, Any] = {
        "iss": iss if iss is not None else f"https://{shop}/admin",
        "dest": dest if dest is not None else f"https://{shop}",
        "aud": aud,
        "sub": "42",
        "exp": int(now + exp_in),
        "nbf": int(now + nbf_in),
        "iat": int(now + nbf_in),
        "jti": uuid.uuid4().hex,
        "sid": uuid.uuid4().hex,
    }
    for name in drop:
        claims.pop(name)
    return jwt.encode(claims, secret, algorithm=algorithm)


def signed_query(params: dict[str, str], secret: str = API_SECRET) -> dict[str, str]:
    """`params` plus the `hmac` Shopify would add."""
    from werkzeug.datastructures import MultiDict

    return {**params, "hmac": signature(MultiDict(params), secret)}


def grant_answer(**overrides: Any) -> dict[str, Any]:
    """What the token endpoint answers for an expiring offline token."""
    answer = {
        "access_token": f"shpat_{uuid.uuid4().hex}",
        "expires_in": 3600,
        "refresh_token": f"shprt_{uuid.uuid4().hex}",
        "refresh_token_expires_in": 7_776_000,
        "scope": SCOPES,
    }
    answer.update(overrides)
    return answer


@dataclass
class TokenEndpoint:
    """POST https://{shop}/admin/oauth/access_token. Records each form; answers from
    `answers` (status, body) in order, then with fresh expiring grants. `delay` holds each
    answer, to let concurrent callers pile up."""

    mock: responses.RequestsMock
    shop: str = SHOP
    delay: float = 0.0
    forms: list[dict[str, str]] = field(default_factory=list)
    granted: list[dict[str, Any]] = field(default_factory=list)
    answers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    # Called with each granted answer (e.g. so a fake Admin API starts taking the new token).
    on_grant: Callable[[dict[str, Any]], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.mock.add_callback(
            responses.POST, f"https://{self.shop}/admin/oauth/access_token", callback=self._answer
        )

    def _answer(self, request: Any) -> tuple[int, dict[str, str], str]:
        assert request.headers["Content-Type"] == FORM, "grants are form-encoded"
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        pairs = parse_qsl(body, keep_blank_values=True, strict_parsing=True)
        form = dict(pairs)
        assert len(form) == len(pairs), f"a field was sent twice: {pairs}"
        with self._lock:
            self.forms.append(form)
            status, answer = self.answers.pop(0) if self.answers else (200, grant_answer())
            if status == 200:
                self.granted.append(answer)
                if self.on_grant is not None:
                    self.on_grant(answer)
        if self.delay:
            time.sleep(self.delay)
        return status, {"Content-Type": "application/json"}, json.dumps(answer)

    @property
    def calls(self) -> int:
        return len(self.forms)


@dataclass
class AdminApi:
    """POST https://{shop}/admin/api/<version>/graphql.json. Every document is validated
    against Shopify's schema; a token not in `tokens` gets 401. Keeps webhook subscriptions
    like Shopify does, so idempotency is observable."""

    mock: responses.RequestsMock
    shop: str = SHOP
    tokens: set[str] = field(default_factory=set)
    accept_any_token: bool = False
    subscriptions: list[dict[str, str]] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)
    seen_tokens: list[str] = field(default_factory=list)
    shop_name: str = "Calm Coffee"
    handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.mock.add_callback(
            responses.POST,
            f"https://{self.shop}/admin/api/{SHOPIFY_API_VERSION}/graphql.json",
            callback=self._answer,
        )

    def _answer(self, request: Any) -> tuple[int, dict[str, str], str]:
        token = request.headers.get("X-Shopify-Access-Token", "")
        with self._lock:
            self.seen_tokens.append(token)
        if not self.accept_any_token and token not in self.tokens:
            return (
                401,
                {"Content-Type": "application/json"},
                '{"errors":"[API] Invalid API key or access token"}',
            )
        body = json.loads(request.body)
        assert_valid_where_available(body["query"], body.get("variables"))
        name = _operation_name(body["query"])
        with self._lock:
            self.operations.append(name)
        handler = self.handlers.get(name) or getattr(self, "_" + name, None)
        assert handler is not None, f"the fake Admin API does not answer {name}"
        data = handler(body.get("variables") or {})
        cost = {
            "requestedQueryCost": 10,
            "actualQueryCost": 10,
            "throttleStatus": {"maximumAvailable": 2000, "currentlyAvailable": 1990, "restoreRate": 100},
        }
        return (
            200,
            {"Content-Type": "application/json"},
            json.dumps({"data": data, "extensions": {"cost": cost}}),
        )

    def _AmendsShopDetails(self, variables: dict[str, Any]) -> dict[str, Any]:
        return {
            "shop": {"name": self.shop_name, "email": "owner@calm-coffee.example", "currencyCode": "EUR"},
            "currentAppInstallation": {"accessScopes": [{"handle": s} for s in SCOPES.split(",")]},
        }

    def _AmendsWebhookSubscriptions(self, variables: dict[str, Any]) -> dict[str, Any]:
        return {"webhookSubscriptions": {"nodes": [dict(s) for s in self.subscriptions]}}

    def _AmendsWebhookSubscriptionCreate(self, variables: dict[str, Any]) -> dict[str, Any]:
        node = {
            "id": f"gid://shopify/WebhookSubscription/{len(self.subscriptions) + 1}",
            "topic": variables["topic"],
            "uri": variables["webhookSubscription"]["uri"],
            "filter": variables["webhookSubscription"].get("filter"),
        }
        self.subscriptions.append(node)
        return {"webhookSubscriptionCreate": {"webhookSubscription": node, "userErrors": []}}

    def _AmendsWebhookSubscriptionUpdate(self, variables: dict[str, Any]) -> dict[str, Any]:
        node = next(s for s in self.subscriptions if s["id"] == variables["id"])
        node["uri"] = variables["webhookSubscription"]["uri"]
        if "filter" in variables["webhookSubscription"]:
            node["filter"] = variables["webhookSubscription"]["filter"]
        return {"webhookSubscriptionUpdate": {"webhookSubscription": dict(node), "userErrors": []}}


def _operation_name(document: str) -> str:
    from graphql import OperationDefinitionNode, parse

    for definition in parse(document).definitions:
        if isinstance(definition, OperationDefinitionNode) and definition.name:
            return definition.name.value
    raise AssertionError("every document Amends sends is named")
