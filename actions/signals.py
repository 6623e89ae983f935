"""Small helpers the topic handlers share: reading Shopify's payload values, and reading an
order's context without letting a Shopify failure lose the signal."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from plugin.errors import ShopifyError, ShopNotFoundError
from plugin.shopify.client import ShopifyClient
from plugin.shopify.orders import OrderContext, fetch_order_context

log = logging.getLogger(__name__)


class ContextReader(Protocol):
    """Reads an order's context outside any database transaction (DeliveryContext does)."""

    def order_context(self, order_id: int) -> OrderContext | None: ...


class SessionReader:
    """A ContextReader for code outside a delivery (the scan): ends `session`'s read
    transaction before each Shopify call, and refuses if the session has written."""

    def __init__(self, session: Session, client: ShopifyClient, consent: bool):
        self.session = session
        self.client = client
        self.consent = consent  # the shop's respect_marketing_consent

    def order_context(self, order_id: int) -> OrderContext | None:
        if self.session.new or self.session.dirty or self.session.deleted:
            raise RuntimeError("read the order's context before writing")
        self.session.commit()
        return fetch_order_context(self.client, order_id, consent=self.consent)


def read_context(reader: ContextReader, shop: str, order_id: int) -> tuple[OrderContext | None, str | None]:
    """(context, None) when Shopify answered (context None: no such order), or
    (None, reason) when it could not be read now; the incident is recorded either way."""
    try:
        return reader.order_context(order_id), None
    except (ShopifyError, ShopNotFoundError) as error:
        log.warning("shop %s: order %s context not read: %s", shop, order_id, type(error).__name__)
        return None, f"{type(error).__name__}: {error}"[:500]


def parse_time(value: Any) -> datetime | None:
    """Shopify's ISO 8601 times ("2026-10-01T12:00:00-04:00", "…Z"); None when absent or bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def as_int(value: Any) -> int | None:
    """Shopify REST ids are integers (sometimes sent as strings); gids are not accepted here."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
