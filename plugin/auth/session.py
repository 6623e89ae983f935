"""Session tokens: every /api/ request carries `Authorization: Bearer <session token>`.

`require_shop` verifies it (HS256 with the client secret, audience, expiry with leeway,
issuer and destination on the same *.myshopify.com host, an installed shop) and puts the
shop on `flask.g`. In dev mode with no Shopify credentials, the demo shop is let in
without a token; that bypass can never be active when SHOPIFY_API_SECRET is set.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import jwt
from flask import current_app, g, jsonify, request
from sqlalchemy import select

from plugin.config import DEV_SHOP
from plugin.errors import AuthError
from plugin.models import Shop
from plugin.services import Services

log = logging.getLogger(__name__)

LEEWAY_SECONDS = 10
REQUIRED_CLAIMS = ["iss", "dest", "aud", "sub", "exp", "nbf", "iat"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class SessionClaims:
    shop: str
    user_id: str | None
    session_id: str | None


def decode(token: str, api_key: str, secrets: tuple[str, ...]) -> SessionClaims:
    """Verify a session token; raise AuthError with the reason."""
    last_error: Exception | None = None
    for secret in secrets:
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                audience=api_key,
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED_CLAIMS},
            )
            break
        except jwt.InvalidSignatureError as error:
            last_error = error  # perhaps signed with the other secret during rotation
        except jwt.PyJWTError as error:
            raise AuthError(f"invalid session token: {error}") from error
    else:
        raise AuthError(f"invalid session token: {last_error}")
    issuer = urlsplit(str(claims["iss"])).hostname or ""
    dest = urlsplit(str(claims["dest"])).hostname or ""
    from plugin.auth.shops import valid_shop_domain

    if not valid_shop_domain(dest):
        raise AuthError("invalid session token: dest is not a *.myshopify.com shop")
    if issuer != dest or not str(claims["iss"]).rstrip("/").endswith("/admin"):
        raise AuthError("invalid session token: iss and dest name different shops")
    return SessionClaims(shop=dest, user_id=claims.get("sub"), session_id=claims.get("sid"))


def authenticate() -> Shop:
    """The installed shop this request speaks for, or AuthError."""
    services: Services = current_app.extensions["amends"]
    config = services.config
    header = request.headers.get("Authorization", "")
    if not header and config.dev_login:
        domain = DEV_SHOP
    else:
        if not header.startswith("Bearer "):
            raise AuthError("missing session token: send Authorization: Bearer <session token>")
        domain = decode(header[7:].strip(), config.shopify_api_key, config.webhook_secrets).shop
    with services.db.session() as session:
        shop = session.scalar(select(Shop).where(Shop.domain == domain))
    if shop is None or not shop.installed:
        raise AuthError(f"{domain} has not installed Amends")
    return shop


def require_shop(view: F) -> F:
    """Decorator for /api/ views: 401 with Shopify's retry header unless authenticated."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            shop = authenticate()
        except AuthError as error:
            log.info("api request refused: %s", error.reason)
            response = jsonify({"error": "unauthorized", "message": error.reason})
            response.status_code = 401
            response.headers["X-Shopify-Retry-Invalid-Session-Request"] = "1"
            return response
        g.shop_id = shop.id
        g.shop_domain = shop.domain
        g.csp_shop = shop.domain
        return view(*args, **kwargs)

    return cast(F, wrapper)
