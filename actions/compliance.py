"""The mandatory compliance topics (Shopify sends them whether or not the shop is installed).

- customers/data_request → a DataExport of everything Amends holds about the customer,
  downloadable from the admin for the merchant to pass on.
- customers/redact → the customer's personal data erased everywhere Amends keeps it.
- shop/redact (48 h after uninstall) → everything of the shop deleted.

The delivery's own payload names the customer, so it is dropped once acted on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import select

from plugin.jobs import enqueue_after_commit
from plugin.models import Shop
from plugin.privacy.customer import Customer
from plugin.privacy.erase import erase_customer
from plugin.privacy.export import build_export
from plugin.privacy.shop_data import delete_shop as delete_shop_row
from plugin.privacy.shop_data import erase_shop
from plugin.services import current

if TYPE_CHECKING:
    from actions.deliveries import DeliveryContext

log = logging.getLogger(__name__)

DELETE_SHOP = "actions.compliance.delete_shop"


def _one_at_a_time(ctx: DeliveryContext) -> None:
    """A data request and a redact of the shop's customers run one after the other (a lock on
    the shop's row until commit): an export read alongside a redact could otherwise keep what
    the redact was erasing."""
    ctx.session.execute(select(Shop.id).where(Shop.id == ctx.shop.id).with_for_update())


def on_data_request(ctx: DeliveryContext) -> str | None:
    customer = Customer.from_payload(ctx.payload)
    if not customer.known:
        return "the data request names no customer"
    _one_at_a_time(ctx)
    request_id = (ctx.payload.get("data_request") or {}).get("id")
    export = build_export(ctx.session, ctx.shop, customer, str(request_id) if request_id else None)
    ctx.delivery.payload = None  # the export holds what the merchant needs
    ctx.session.flush()
    log.info("shop %s: data request %s exported as export %s", ctx.shop.domain, request_id, export.id)
    return None


def on_customer_redact(ctx: DeliveryContext) -> str | None:
    customer = Customer.from_payload(ctx.payload)
    ctx.delivery.payload = None
    if not customer.known:
        ctx.session.flush()
        return "the redact request names no customer"
    _one_at_a_time(ctx)
    erase_customer(ctx.session, ctx.shop, customer, source=f"webhook:{ctx.delivery.topic}")
    return None


def on_shop_redact(ctx: DeliveryContext) -> str | None:
    shop = ctx.shop
    if shop.installed:
        # Shopify asks 48 h after an uninstall; the shop has installed Amends again since.
        return "the shop has installed Amends again; nothing erased"
    erase_shop(ctx.session, shop, keep_delivery_id=ctx.delivery.id)
    ctx.delivery.payload = None
    ctx.session.flush()
    enqueue_after_commit(ctx.session, ctx.services, DELETE_SHOP, shop.id)
    return None


def delete_shop(shop_id: int) -> None:
    """Job: delete the emptied shop row once shop/redact's unit of work is committed."""
    delete_shop_row(current(), shop_id)
