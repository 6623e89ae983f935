"""app/uninstalled: the shop is marked uninstalled and its tokens are dropped (Shopify has
revoked them already). Its scheduled work stops because every job and scan skips a shop that
is not installed. Incidents, tasks and settings stay until shop/redact, so a reinstall brings
the shop back as it was.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from plugin import tokens
from plugin.db import utcnow

if TYPE_CHECKING:
    from actions.deliveries import DeliveryContext

log = logging.getLogger(__name__)


def on_app_uninstalled(ctx: DeliveryContext) -> str | None:
    shop = ctx.shop
    if shop.installed_at is not None and shop.installed_at > ctx.received_at:
        # Delivered late: the shop installed Amends again after this uninstall happened.
        return "the shop installed Amends again after this uninstall"
    if shop.uninstalled_at is not None:
        tokens.forget(shop)
        return "the shop was already uninstalled"
    shop.uninstalled_at = utcnow()
    tokens.forget(shop)
    shop.reauth_reason = None
    ctx.session.flush()
    log.info("shop %s uninstalled Amends (delivery %s)", shop.domain, ctx.delivery.id)
    return None
