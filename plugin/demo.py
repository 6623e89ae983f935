"""The demo shop a newcomer's `amends dev` starts with: installed, in test mode."""

from __future__ import annotations

from sqlalchemy import select

from plugin.config import DEV_SHOP
from plugin.db import utcnow
from plugin.models import Shop
from plugin.services import Services


def ensure_demo_shop(services: Services) -> Shop:
    with services.db.session() as session:
        shop = session.scalar(select(Shop).where(Shop.domain == DEV_SHOP))
        if shop is None:
            shop = Shop(
                domain=DEV_SHOP,
                name="Amends Demo Store",
                email="owner@amends-demo.test",
                currency="USD",
                scopes=",".join(services.config.scopes),
                test_mode=True,
            )
            session.add(shop)
        if not shop.installed:
            shop.installed_at = utcnow()
            shop.uninstalled_at = None
        if shop.access_token is None:
            # A non-expiring token for the local Shopify stand-in, never for a real store.
            shop.access_token = services.cipher.encrypt("shpat_demo_token")
        return shop
