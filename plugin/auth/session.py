"""Session tokens: who an admin request speaks for.

- Every /api/ request carries `Authorization: Bearer <session token>`. `require_shop`
  verifies it (HS256 with the client secret, audience = client id, expiry and not-before with
  10 s leeway, issuer and destination on the same *.myshopify.com host) and puts the shop on
  `flask.g`; anything else is 401 with `X-Shopify-Retry-Invalid-Session-Request: 1`.
- The app home's first load (`/`) is authenticated by `authenticate_document()`: its
  `id_token`, or else Shopify's query HMAC.
- A valid session token for a shop with no usable offline token (new, reinstalled, or asked
  to re-authenticate) is exchanged for one; when Shopify refuses (the app is not installed
  there) the request is refused.

In dev mode with no Shopify credentials, the demo shop is let in without a token; that bypass
can never be active when SHOPIFY_API_SECRET is set.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import urlencode, urlsplit

import jwt
from flask import current_app, g, jsonify, request
from sqlalchemy import select

from plugin import tokens
from plugin.auth import exchange, query
from plugin.auth.shops import valid_shop_domain
from plugin.config import DEV_SHOP, Config
from plugin.errors import (
    AuthError,
    InstallRequiredError,
    SessionTokenExpiredError,
    TokenGrantError,
    TokenGrantRetryableError,
)
from plugin.models import Shop
from plugin.services import Services

log = logging.getLogger(__name__)

LEEWAY_SECONDS = 10
REQUIRED_CLAIMS = ["iss", "dest", "aud", "sub", "exp", "nbf", "iat"]
RETRY_HEADER = "X-Shopify-Retry-Invalid-Session-Request"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class SessionClaims:
    shop: str
    user_id: str | None
    session_id: str | None


def decode(token: str, api_key: str, secrets: tuple[str, ...]) -> SessionClaims:
    """Verify a session token; raise AuthError (SessionTokenExpiredError once expired)."""
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
        except jwt.ExpiredSignatureError as error:
            raise SessionTokenExpiredError(f"invalid session token: {error}") from error
        except jwt.PyJWTError as error:
            raise AuthError(f"invalid session token: {error}") from error
    else:
        raise AuthError(f"invalid session token: {last_error}")
    issuer = urlsplit(str(claims["iss"]))
    dest = urlsplit(str(claims["dest"]))
    if dest.scheme != "https" or not valid_shop_domain(dest.hostname):
        raise AuthError("invalid session token: dest is not https://<shop>.myshopify.com")
    if issuer.hostname != dest.hostname or issuer.path.rstrip("/") != "/admin":
        raise AuthError("invalid session token: iss and dest name different shops")
    return SessionClaims(shop=str(dest.hostname), user_id=claims.get("sub"), session_id=claims.get("sid"))


def shop_for_session(services: Services, domain: str, session_token: str) -> Shop:
    """The installed shop a verified session token speaks for, with a usable offline token."""
    try:
        return exchange.ensure_offline_token(services, domain, session_token)
    except TokenGrantRetryableError as error:
        raise AuthError("Shopify could not be reached to finish the install; try again", 503) from error
    except TokenGrantError as error:
        raise AuthError(
            f"{domain} has not installed Amends (token exchange refused: {error.code})"
        ) from error


def authenticate() -> Shop:
    """The installed shop this /api/ request speaks for, or AuthError."""
    services: Services = current_app.extensions["amends"]
    config = services.config
    header = request.headers.get("Authorization", "")
    if not header and config.dev_login:
        return _dev_shop(services)
    if not header.startswith("Bearer "):
        raise AuthError("missing session token: send Authorization: Bearer <session token>")
    token = header[7:].strip()
    claims = decode(token, config.shopify_api_key, config.webhook_secrets)
    return shop_for_session(services, claims.shop, token)


def authenticate_document() -> Shop:
    """The shop for a page load of the app home, from its `id_token` or Shopify's query HMAC.

    Raises AuthError (400/401), SessionTokenExpiredError (an old id_token: App Bridge can get
    a new one) or InstallRequiredError (OAuth first). `plugin.auth.pages.refusal(error)`
    turns each into the right answer. Sets `g.csp_shop` so the page may be framed by the
    shop's admin, also when it is refused.
    """
    services: Services = current_app.extensions["amends"]
    config = services.config
    args = request.args
    claimed = (args.get("shop") or "").strip().lower()
    if valid_shop_domain(claimed):
        g.csp_shop = claimed
    id_token = args.get("id_token")
    if id_token:
        claims = decode(id_token, config.shopify_api_key, config.webhook_secrets)
        if claimed and claimed != claims.shop:
            raise AuthError("the id_token was issued for another shop")
        shop = shop_for_session(services, claims.shop, id_token)
    elif args.get("hmac"):
        verdict = query.verify(args, config.webhook_secrets)
        if isinstance(verdict, query.Refused):
            raise AuthError(f"{verdict.message}. {verdict.detail}".strip(), verdict.status)
        found = exchange.load_shop(services, verdict.shop)
        if found is None or not tokens.usable(found):
            raise InstallRequiredError(
                f"{verdict.shop} must install Amends", install_url(config, verdict.shop)
            )
        shop = found
    elif config.dev_login:
        shop = _dev_shop(services)
    else:
        raise AuthError("Open Amends from your Shopify admin (Apps → Amends).", 400)
    _remember(shop)
    return shop


def install_url(config: Config, shop: str) -> str:
    return f"{config.app_url}/auth/install?{urlencode({'shop': shop})}"


def require_shop(view: F) -> F:
    """Decorator for /api/ views: 401 with Shopify's retry header unless authenticated."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            shop = authenticate()
        except AuthError as error:
            log.info("api request refused: %s", error.reason)
            response = jsonify({"error": "unauthorized", "message": error.reason})
            response.status_code = error.status if error.status in (401, 503) else 401
            if response.status_code == 401:
                response.headers[RETRY_HEADER] = "1"
            return response
        _remember(shop)
        return view(*args, **kwargs)

    return cast(F, wrapper)


def _remember(shop: Shop) -> None:
    g.shop_id = shop.id
    g.shop_domain = shop.domain
    g.csp_shop = shop.domain


def _dev_shop(services: Services) -> Shop:
    with services.db.session() as session:
        shop = session.scalar(select(Shop).where(Shop.domain == DEV_SHOP))
    if shop is None or not shop.installed:
        raise AuthError(f"{DEV_SHOP} has not installed Amends")
    return shop
