"""shop/redact: delete everything Amends holds for a shop.

`erase_shop` runs inside the delivery's unit of work: it deletes every row of every table
scoped to the shop (a table added later is covered too), every recorded delivery from that
shop except the one being processed, and empties the shop row itself (name, email, tokens,
scopes). `delete_shop` (a job, after commit) then deletes the emptied row, and with it the
remaining delivery record: the shop is gone without a trace.
"""

from __future__ import annotations

import logging

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from plugin import tokens
from plugin.auth.token_lock import rowcount
from plugin.db import Base
from plugin.models import Delivery, Incident, Shop
from plugin.services import Services

log = logging.getLogger(__name__)


def erase_shop(session: Session, shop: Shop, keep_delivery_id: int | None) -> dict[str, int]:
    deleted: dict[str, int] = {}
    incident_ids = select(Incident.id).where(Incident.shop_id == shop.id).scalar_subquery()
    # Children before parents, so no foreign key is ever left dangling.
    for table in reversed(Base.metadata.sorted_tables):
        if table.name in ("shops", "deliveries"):
            continue
        if "shop_id" in table.c:
            statement = delete(table).where(table.c.shop_id == shop.id)
        elif "incident_id" in table.c:
            statement = delete(table).where(table.c.incident_id.in_(incident_ids))
        else:
            continue
        count = rowcount(session.execute(statement))
        if count:
            deleted[table.name] = count
    gone = delete(Delivery).where(
        (Delivery.shop_domain == shop.domain) | (Delivery.shop_id == shop.id),
        Delivery.id != (keep_delivery_id or -1),
    )
    deleted["deliveries"] = rowcount(session.execute(gone.execution_options(synchronize_session=False)))
    shop.name = None
    shop.email = None
    shop.currency = None
    shop.scopes = ""
    tokens.forget(shop)
    shop.reauth_reason = None
    shop.webhooks_registered_at = None
    session.flush()
    log.info("shop %s: all data erased (%s)", shop.domain, ", ".join(f"{k}={v}" for k, v in deleted.items()))
    return deleted


def delete_shop(services: Services, shop_id: int) -> bool:
    """Delete the emptied shop row (cascading to what refers to it). Not while installed."""
    with services.db.session() as session:
        shop = session.get(Shop, shop_id)
        if shop is None or shop.installed:
            return False
        domain = shop.domain
        session.execute(delete(Delivery).where(Delivery.shop_domain == domain))
        session.delete(shop)
    log.info("shop %s: row deleted after shop/redact", domain)
    return True
