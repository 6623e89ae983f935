"""Finishing an install with what only Shopify knows: the shop's name, contact email,
currency and granted scopes, and (where the TOML does not do it) its webhook subscriptions.

Runs in the `actions.install.after_install` job, or directly in the custom-app command.
Network calls happen outside any database transaction; the results are written afterwards.
"""

from __future__ import annotations

import logging

from plugin.auth.installs import CUSTOM_APP
from plugin.db import utcnow
from plugin.models import Shop
from plugin.services import Services
from plugin.shopify.client import ShopifyClient
from plugin.shopify.shop_details import fetch_shop_details
from plugin.shopify.webhooks import Registration, ensure_subscriptions

log = logging.getLogger(__name__)


def complete_install(services: Services, shop_id: int) -> Registration | None:
    """The webhook registration done (None when none was needed, or the shop is gone)."""
    with services.db.session() as session:
        shop = session.get(Shop, shop_id)
        if shop is None or not shop.installed:
            log.info("shop %s is no longer installed: nothing to complete", shop_id)
            return None
        domain = shop.domain
        register = services.config.register_webhooks or shop.installed_via == CUSTOM_APP
    client = ShopifyClient(services, domain)
    details = fetch_shop_details(client)
    registered = ensure_subscriptions(client, webhooks_url(services)) if register else None
    with services.db.session() as session:
        found = session.get(Shop, shop_id)
        if found is None:
            return None
        found.name = details.name or found.name
        found.email = details.email or found.email
        found.currency = details.currency or found.currency
        if details.scopes:
            found.scopes = details.scopes
        if registered is not None:
            found.webhooks_registered_at = utcnow()
    log.info("shop %s: install completed%s", domain, " (webhooks registered)" if registered else "")
    return registered


def webhooks_url(services: Services) -> str:
    return f"{services.config.app_url}/webhooks"
