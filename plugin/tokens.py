"""A shop's Admin API access token, refreshed before it expires.

Owned by the install/auth work: this first version decrypts the stored token.
"""

from __future__ import annotations

from sqlalchemy import select

from plugin.db import utcnow
from plugin.errors import ShopNotFoundError
from plugin.models import Shop
from plugin.services import Services


def access_token(services: Services, shop_domain: str, force_refresh: bool = False) -> str:
    with services.db.session() as session:
        shop = session.scalar(select(Shop).where(Shop.domain == shop_domain))
        if shop is None or not shop.installed or shop.access_token is None:
            raise ShopNotFoundError(f"{shop_domain} is not installed")
        return services.cipher.decrypt(shop.access_token)


def mark_needs_reauth(services: Services, shop_domain: str, reason: str) -> None:
    with services.db.session() as session:
        shop = session.scalar(select(Shop).where(Shop.domain == shop_domain))
        if shop is not None:
            shop.reauth_reason = f"{reason} ({utcnow():%Y-%m-%d %H:%M} UTC)"
