"""A shop's Admin API access token, refreshed before it expires.

- `access_token()` answers a token good for at least REFRESH_MARGIN; one that expires sooner
  is first replaced with the refresh-token grant.
- After a 401 the client asks again with `rejected=<the refused token>`: the pair is
  refreshed once, unless another worker has already replaced that token.
- A shop's refreshes are serialised by `token_lock` (Redis, or a claim on the shop's row).
  A worker that waited re-reads the row and uses the first worker's result, so however many
  workers need a new token at once, Shopify receives one refresh request.
- The new pair is written in one UPDATE, guarded by the old ciphertext (compare-and-swap).
- A refresh refused for good sets `shop.reauth_reason` (shown in the admin); later calls fail
  at once with ShopifyAuthError instead of asking Shopify again, until the merchant opens the
  app (token exchange) or installs it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from plugin.auth import grants
from plugin.auth.grants import TokenSet
from plugin.auth.token_lock import rowcount, token_lock
from plugin.crypto import TokenCipher
from plugin.db import utcnow
from plugin.errors import (
    ShopifyAuthError,
    ShopNotFoundError,
    TokenGrantError,
    TokenGrantRetryableError,
)
from plugin.models import Shop
from plugin.services import Services

log = logging.getLogger(__name__)

# "Expires within a few minutes" means: refresh now.
REFRESH_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class _Stored:
    access_cipher: bytes
    access_token: str
    expires_at: datetime | None
    refresh_token: str | None
    refresh_expires_at: datetime | None

    def fresh(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now + REFRESH_MARGIN


def usable(shop: Shop | None, now: datetime | None = None) -> bool:
    """The shop is installed with an offline token that works now or can be refreshed."""
    if shop is None or not shop.installed or shop.access_token is None or shop.reauth_reason:
        return False
    now = now or utcnow()
    if shop.access_token_expires_at is None or shop.access_token_expires_at > now + REFRESH_MARGIN:
        return True
    return shop.refresh_token is not None and (
        shop.refresh_token_expires_at is None or shop.refresh_token_expires_at > now
    )


def store(shop: Shop, cipher: TokenCipher, granted: TokenSet) -> None:
    """Put a granted pair on `shop` (encrypted); the caller's unit of work commits it."""
    shop.access_token = cipher.encrypt(granted.access_token)
    shop.access_token_expires_at = granted.expires_at
    shop.refresh_token = cipher.encrypt(granted.refresh_token) if granted.refresh_token else None
    shop.refresh_token_expires_at = granted.refresh_expires_at if granted.refresh_token else None
    if granted.scopes:
        shop.scopes = granted.scopes
    shop.reauth_reason = None


def forget(shop: Shop) -> None:
    """Drop the shop's tokens (on uninstall: Shopify has revoked them already)."""
    shop.access_token = None
    shop.access_token_expires_at = None
    shop.refresh_token = None
    shop.refresh_token_expires_at = None
    shop.token_claimed_until = None


def access_token(
    services: Services, shop_domain: str, force_refresh: bool = False, rejected: str | None = None
) -> str:
    """A working access token for the shop. `force_refresh` (after a 401) replaces `rejected`,
    or the current token when `rejected` is not given."""
    stored = _load(services, shop_domain)
    if force_refresh:
        if rejected is not None and rejected != stored.access_token and stored.fresh(utcnow()):
            return stored.access_token  # another worker has replaced the refused token
    elif stored.fresh(utcnow()):
        return stored.access_token
    return _refresh(services, shop_domain, seen=rejected or stored.access_token)


def _refresh(services: Services, domain: str, seen: str) -> str:
    with token_lock(services, domain):
        stored = _load(services, domain)
        if stored.access_token != seen and stored.fresh(utcnow()):
            log.info("shop %s: token already refreshed by another worker", domain)
            return stored.access_token
        if stored.refresh_token is None:
            raise _needs_reauth(services, domain, "the access token was refused and cannot be refreshed")
        if stored.refresh_expires_at is not None and stored.refresh_expires_at <= utcnow():
            raise _needs_reauth(services, domain, "the refresh token has expired")
        try:
            granted = grants.refresh(services.config, domain, stored.refresh_token)
        except TokenGrantRetryableError:
            raise  # the job is retried; the stored pair stays as it was
        except TokenGrantError as error:
            reason = f"Shopify refused the token refresh ({error.code or error.status})"
            raise _needs_reauth(services, domain, reason) from error
        _save(services, domain, stored, granted)
        return granted.access_token


def _save(services: Services, domain: str, old: _Stored, granted: TokenSet) -> None:
    cipher = services.cipher
    # Shopify keeps the old refresh token valid when it sends no new one.
    refresh_token = granted.refresh_token or old.refresh_token
    values: dict[str, Any] = {
        "access_token": cipher.encrypt(granted.access_token),
        "access_token_expires_at": granted.expires_at,
        "refresh_token": cipher.encrypt(refresh_token) if refresh_token else None,
        "refresh_token_expires_at": (
            granted.refresh_expires_at if granted.refresh_token else old.refresh_expires_at
        ),
        "reauth_reason": None,
    }
    if granted.scopes:
        values["scopes"] = granted.scopes
    with services.db.session() as session:
        saved = rowcount(
            session.execute(
                update(Shop)
                .where(Shop.domain == domain, Shop.access_token == old.access_cipher)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        )
    if saved != 1:
        # Someone stored another pair meanwhile (a reinstall, or a lock that expired): theirs
        # stays; the token we were granted still works for this call.
        log.warning("shop %s: refreshed token not stored, the stored pair changed meanwhile", domain)
    else:
        log.info("shop %s: token pair refreshed (expires %s)", domain, granted.expires_at)


def _load(services: Services, domain: str) -> _Stored:
    with services.db.session() as session:
        shop = session.scalar(select(Shop).where(Shop.domain == domain))
        if shop is None or not shop.installed or shop.access_token is None:
            raise ShopNotFoundError(f"{domain} is not installed")
        if shop.reauth_reason:
            raise ShopifyAuthError(f"{domain} must open Amends again: {shop.reauth_reason}")
        cipher = services.cipher
        return _Stored(
            access_cipher=shop.access_token,
            access_token=cipher.decrypt(shop.access_token),
            expires_at=shop.access_token_expires_at,
            refresh_token=cipher.decrypt(shop.refresh_token) if shop.refresh_token else None,
            refresh_expires_at=shop.refresh_token_expires_at,
        )


def _needs_reauth(services: Services, domain: str, reason: str) -> ShopifyAuthError:
    mark_needs_reauth(services, domain, reason)
    log.warning("shop %s needs to re-authenticate: %s", domain, reason)
    return ShopifyAuthError(f"{domain} must open Amends again: {reason}")


def mark_needs_reauth(services: Services, shop_domain: str, reason: str) -> None:
    with services.db.session() as session:
        shop = session.scalar(select(Shop).where(Shop.domain == shop_domain))
        if shop is not None:
            shop.reauth_reason = f"{reason} ({utcnow():%Y-%m-%d %H:%M} UTC)"
