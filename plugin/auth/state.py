"""The OAuth `state` nonce: sent to Shopify in the authorize URL and kept in a signed,
short-lived cookie, so the callback can prove it finishes an install this browser started.

The cookie is set on a top-level page (never inside the admin's iframe) with SameSite=Lax,
which browsers send on Shopify's top-level redirect back to /auth/callback.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response

from plugin.config import Config

COOKIE = "amends_oauth_state"
COOKIE_PATH = "/auth/callback"
MAX_AGE_SECONDS = 600


@dataclass(frozen=True)
class State:
    nonce: str
    shop: str


def _serializer(config: Config) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(config.secret_key, salt="amends-oauth-state")


def new_nonce() -> str:
    return secrets.token_urlsafe(32)


def set_cookie(response: Response, config: Config, state: State) -> None:
    value = _serializer(config).dumps({"nonce": state.nonce, "shop": state.shop})
    response.set_cookie(
        COOKIE,
        value,
        max_age=MAX_AGE_SECONDS,
        path=COOKIE_PATH,
        secure=config.app_url.startswith("https://"),
        httponly=True,
        samesite="Lax",
    )


def clear_cookie(response: Response, config: Config) -> None:
    response.delete_cookie(
        COOKIE, path=COOKIE_PATH, secure=config.app_url.startswith("https://"), httponly=True, samesite="Lax"
    )


def read_cookie(value: str | None, config: Config) -> State | None:
    """The state this browser holds, or None when absent, tampered with or expired."""
    if not value:
        return None
    try:
        data = _serializer(config).loads(value, max_age=MAX_AGE_SECONDS)
    except BadSignature:  # SignatureExpired is a BadSignature too
        return None
    if not isinstance(data, dict) or not isinstance(data.get("nonce"), str):
        return None
    return State(nonce=data["nonce"], shop=str(data.get("shop", "")))


def matches(held: State, nonce: str, shop: str) -> bool:
    return hmac.compare_digest(held.nonce.encode(), nonce.encode()) and held.shop == shop
