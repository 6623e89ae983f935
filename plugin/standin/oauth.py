"""The stand-in's side of Shopify's OAuth: the authorize redirect, the token endpoint's three
grants (authorization code, token exchange, refresh), and which access tokens work.

A shop accepts any non-empty access token until the stand-in issues (or is told) its
tokens; from then on only those, and an expiring one only until it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from plugin.standin.shop import ShopState

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a grant name
SCOPES = "read_orders,write_orders,read_returns,read_fulfillments,read_customers,write_discounts"
REFRESH_LIFETIME = 7_776_000  # 90 days


def token_ok(state: ShopState, token: str | None) -> bool:
    if not token:
        return False
    with state.lock:
        expiry = state.token_expiry.get(token)
        if expiry is not None and expiry <= time.time():
            return False
        return state.valid_tokens is None or token in state.valid_tokens


def authorize(
    domain: str, query: Mapping[str, str], client_id: str | None, client_secret: str | None
) -> tuple[int, str]:
    """GET /admin/oauth/authorize: the merchant approves at once; (302, redirect URL) back
    to `redirect_uri` with a code and the query HMAC Shopify would send, or (400, why)."""
    if client_secret is None:
        return 400, "the stand-in was started without a client secret"
    if client_id is not None and query.get("client_id") != client_id:
        return 400, "unknown client_id"
    redirect_uri = query.get("redirect_uri")
    if not redirect_uri:
        return 400, "redirect_uri is missing"
    store = domain.removesuffix(".myshopify.com")
    params = {
        "code": uuid.uuid4().hex,
        "host": base64.urlsafe_b64encode(f"admin.shopify.com/store/{store}".encode()).decode().rstrip("="),
        "shop": domain,
        "state": query.get("state") or "",
        "timestamp": str(int(time.time())),
    }
    message = "&".join(f"{key}={params[key]}" for key in sorted(params))
    params["hmac"] = hmac.new(client_secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return 302, f"{redirect_uri}?{urlencode(params)}"


def grant(
    state: ShopState,
    form: Mapping[str, str],
    client_id: str | None,
    client_secret: str | None,
    lifetime: float,
) -> tuple[int, dict[str, Any]]:
    """POST /admin/oauth/access_token: (status, JSON answer)."""
    if client_id is not None and form.get("client_id") != client_id:
        return 400, {"error": "invalid_client", "error_description": "Unknown client_id"}
    if client_secret is not None and form.get("client_secret") != client_secret:
        return 400, {"error": "invalid_client", "error_description": "Client authentication failed"}
    kind = form.get("grant_type") or ("authorization_code" if form.get("code") else "")
    with state.lock:
        if kind == "refresh_token":
            old = state.refresh_tokens.pop(form.get("refresh_token") or "", None)
            if old is None:
                return 400, {"error": "invalid_grant", "error_description": "Refresh token is invalid"}
            if state.valid_tokens is not None:
                state.valid_tokens.discard(old)
            expiring = True
        elif kind == TOKEN_EXCHANGE:
            if not form.get("subject_token"):
                return 400, {"error": "invalid_request", "error_description": "subject_token is missing"}
            expiring = form.get("expiring") == "1"
        elif kind == "authorization_code":
            if not form.get("code"):
                return 400, {"error": "invalid_request", "error_description": "code is missing"}
            expiring = form.get("expiring") == "1"
        else:
            return 400, {"error": "unsupported_grant_type", "error_description": f"grant_type {kind!r}"}
        access = f"shpat_standin_{uuid.uuid4().hex}"
        if state.valid_tokens is None:
            state.valid_tokens = set()
        state.valid_tokens.add(access)
        answer: dict[str, Any] = {"access_token": access, "scope": SCOPES}
        if expiring:
            refresh = f"shprt_standin_{uuid.uuid4().hex}"
            state.refresh_tokens[refresh] = access
            state.token_expiry[access] = time.time() + lifetime
            answer.update(
                expires_in=int(lifetime), refresh_token=refresh, refresh_token_expires_in=REFRESH_LIFETIME
            )
        return 200, answer
