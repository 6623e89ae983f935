"""Custom-app install: a store running Amends privately gives the Admin API access token it
created for its custom app (non-expiring). The token is checked against Shopify before it is
stored; the shop's details and webhook subscriptions are then set up at once."""

from __future__ import annotations

import logging

from plugin.auth import installs
from plugin.auth.completion import complete_install
from plugin.auth.grants import TokenSet
from plugin.auth.shops import valid_shop_domain
from plugin.errors import AppError
from plugin.models import Shop
from plugin.services import Services
from plugin.shopify.client import ShopifyClient
from plugin.shopify.shop_details import fetch_shop_details
from plugin.shopify.webhooks import Registration

log = logging.getLogger(__name__)


def add_custom_app_shop(services: Services, domain: str, token: str) -> tuple[Shop, Registration | None]:
    """Raises AppError for a bad domain, ShopifyAuthError when Shopify refuses the token."""
    domain = domain.strip().lower()
    if not valid_shop_domain(domain):
        raise AppError(f"{domain!r} is not a shop domain: use your-store.myshopify.com")
    token = token.strip()
    if not token:
        raise AppError("the access token is empty")
    details = fetch_shop_details(ShopifyClient(services, domain, token=token))
    shop = installs.record_install(
        services,
        domain,
        TokenSet(access_token=token, scopes=details.scopes),
        via=installs.CUSTOM_APP,
        follow_up=False,
    )
    registered = complete_install(services, shop.id)
    return shop, registered
