"""Shopify's token endpoint: the three grants Amends uses, each asking for an expiring
offline token (`expiring=1`), posted form-encoded with `requests`.

- authorization code (the OAuth callback),
- token exchange (a session token for an offline token: Shopify-managed install),
- refresh token (a new pair before the access token's hour is up).

A grant answers a `TokenSet` or raises `TokenGrantError` (refused for good) or
`TokenGrantRetryableError` (unreachable, 429, 5xx). Nothing here logs a token or secret.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests

from plugin.config import Config
from plugin.db import utcnow
from plugin.errors import TokenGrantError, TokenGrantRetryableError

log = logging.getLogger(__name__)

TOKEN_PATH = "/admin/oauth/access_token"  # noqa: S105 - a URL path
CONNECT_TIMEOUT = 3.05
READ_TIMEOUT = 15

# Grant and token type names (RFC 8693 and Shopify's), not secrets.
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105
OFFLINE_ACCESS_TOKEN = "urn:shopify:params:oauth:token-type:offline-access-token"  # noqa: S105


@dataclass(frozen=True)
class TokenSet:
    """What the token endpoint granted. Expiries are None for a non-expiring token."""

    access_token: str = ""
    scopes: str = ""
    expires_at: datetime | None = None
    refresh_token: str | None = None
    refresh_expires_at: datetime | None = None

    def __repr__(self) -> str:  # never print the tokens themselves
        return f"TokenSet(scopes={self.scopes!r}, expires_at={self.expires_at!r})"


def token_url(config: Config, shop: str) -> str:
    return config.shopify_admin_base.replace("{shop}", shop) + TOKEN_PATH


def authorization_code(config: Config, shop: str, code: str) -> TokenSet:
    return _grant(config, shop, "authorization_code", {"code": code})


def token_exchange(config: Config, shop: str, session_token: str) -> TokenSet:
    return _grant(
        config,
        shop,
        "token_exchange",
        {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": session_token,
            "subject_token_type": ID_TOKEN,
            "requested_token_type": OFFLINE_ACCESS_TOKEN,
        },
    )


def refresh(config: Config, shop: str, refresh_token: str) -> TokenSet:
    return _grant(config, shop, "refresh", {"grant_type": "refresh_token", "refresh_token": refresh_token})


def _grant(config: Config, shop: str, name: str, fields: dict[str, str]) -> TokenSet:
    form = {
        "client_id": config.shopify_api_key,
        "client_secret": config.shopify_api_secret,
        **fields,
        "expiring": "1",
    }
    try:
        response = requests.post(
            token_url(config, shop),
            data=form,
            headers={"Accept": "application/json"},
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
        )
    except requests.RequestException as error:
        log.warning("shop %s: %s grant: %s reaching Shopify", shop, name, type(error).__name__)
        raise TokenGrantRetryableError(f"{shop}: could not reach Shopify's token endpoint") from error

    body = _json(response)
    if response.status_code == 429 or response.status_code >= 500:
        log.warning("shop %s: %s grant: Shopify answered %s", shop, name, response.status_code)
        raise TokenGrantRetryableError(f"{shop}: token endpoint answered {response.status_code}")
    if response.status_code != 200:
        code = str(body.get("error") or "") or None
        log.warning("shop %s: %s grant refused: %s %s", shop, name, response.status_code, code)
        raise TokenGrantError(
            f"{shop}: Shopify refused the {name} grant ({response.status_code} {code or 'no reason'})",
            status=response.status_code,
            code=code,
        )
    access_token = body.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        log.warning("shop %s: %s grant answered 200 without an access token", shop, name)
        raise TokenGrantRetryableError(f"{shop}: token endpoint answered without an access token")
    now = utcnow()
    refresh_token = body.get("refresh_token")
    granted = TokenSet(
        access_token=access_token,
        scopes=str(body.get("scope") or ""),
        expires_at=_after(now, body.get("expires_in")),
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        refresh_expires_at=_after(now, body.get("refresh_token_expires_in")),
    )
    log.info("shop %s: %s grant succeeded (expires %s)", shop, name, granted.expires_at or "never")
    return granted


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _after(now: datetime, seconds: Any) -> datetime | None:
    try:
        value = int(seconds)
    except (TypeError, ValueError):
        return None
    return now + timedelta(seconds=value) if value > 0 else None
