"""load_order_context: read an incident's order context again when it could not be read
while the incident was opened (Shopify unreachable, throttled, the shop's token refreshing).

The incident carries `missing=["order_context"]` meanwhile, and its apology waits. On success
the context is copied on, and the apology is enqueued. A retryable failure raises (the queue
retries with backoff; the sweep re-enqueues the job if the queue gave up). A permanent failure,
or still no answer a day later, gives up: `missing` says "order_context_unavailable", the
incident needs attention, and the apology job runs and records why it could not be sent.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from plugin import incidents
from plugin.db import utcnow
from plugin.errors import PermanentError, RetryableError
from plugin.incidents import APOLOGY, CONTEXT_PENDING, add_timeline
from plugin.jobs import enqueue_after_commit
from plugin.models import Incident, Shop
from plugin.services import current
from plugin.settings import load
from plugin.shopify.client import ShopifyClient
from plugin.shopify.orders import OrderContext, fetch_order_context

log = logging.getLogger(__name__)

SOURCE = "job:load_order_context"
UNAVAILABLE = "order_context_unavailable"
GIVE_UP_AFTER = timedelta(hours=24)


def load_order_context(incident_id: int) -> None:
    services = current()
    with services.db.session() as session:
        incident = session.get(Incident, incident_id)
        if incident is None or CONTEXT_PENDING not in (incident.missing or []):
            return
        shop = session.get(Shop, incident.shop_id)
        if shop is None:
            return
        domain, order_id, opened_at = shop.domain, incident.order_id, incident.opened_at
        installed = shop.installed
        consent = load(session, shop.id).shop.respect_marketing_consent

    failure: str | None = None
    context: OrderContext | None = None
    if not installed:
        failure = "the shop has uninstalled Amends"
    else:
        try:
            context = fetch_order_context(ShopifyClient(services, domain), order_id, consent=consent)
        except RetryableError as error:
            if utcnow() - opened_at < GIVE_UP_AFTER:
                log.info("incident %s: order context not read yet (%s)", incident_id, type(error).__name__)
                raise
            failure = f"Shopify did not answer for a day ({type(error).__name__})"
        except PermanentError as error:
            failure = f"{type(error).__name__}: {error}"

    with services.db.session() as session:
        incident = session.get(Incident, incident_id)
        if incident is None or CONTEXT_PENDING not in (incident.missing or []):
            return  # another run got there first
        if failure is not None:
            incident.missing = [UNAVAILABLE if m == CONTEXT_PENDING else m for m in incident.missing]
            incident.needs_attention = f"The order's details could not be read from Shopify: {failure}"[:2000]
            add_timeline(session, incident, "context_unavailable", incident.needs_attention, SOURCE)
            log.warning("incident %s: gave up reading the order context", incident_id)
        elif context is None:
            incident.missing = ["order"]
            add_timeline(session, incident, "context_unavailable", "Shopify has no such order", SOURCE)
        else:
            incidents.apply_context(incident, context)
            what = f"; missing: {', '.join(context.missing)}" if context.missing else ""
            add_timeline(
                session,
                incident,
                "context_loaded",
                f"Order {context.order_name or order_id} read from Shopify{what}",
                "api:order",
                data={"missing": context.missing},
            )
        # Ahead of the queue, as a new incident's first response (plugin/incidents.py).
        enqueue_after_commit(
            session, services, APOLOGY, incident.id, job_id=f"apology-{incident.id}", front=True
        )
