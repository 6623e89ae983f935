"""process_delivery: turn one recorded webhook delivery into incident changes."""

from __future__ import annotations

import logging

from plugin.db import utcnow
from plugin.models import Delivery
from plugin.services import current

log = logging.getLogger(__name__)


def process_delivery(delivery_id: int) -> None:
    services = current()
    with services.db.session() as session:
        delivery = session.get(Delivery, delivery_id)
        if delivery is None or delivery.state != "pending":
            return
        delivery.attempts += 1
        delivery.state = "done"
        delivery.processed_at = utcnow()
        log.info("delivery %s (%s) processed", delivery.id, delivery.topic)
