"""after_install: the part of an install that needs Shopify, after the merchant's request."""

from __future__ import annotations

from plugin.auth.completion import complete_install
from plugin.services import current


def after_install(shop_id: int) -> None:
    complete_install(current(), shop_id)
