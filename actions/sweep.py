"""The periodic sweep: what our durable state says is unfinished gets enqueued again.

A delivery is recorded before it is enqueued; if the queue was down (or lost the job, or gave
up retrying), the delivery is still "pending" in the database. Every SWEEP_SECONDS (a minute
by default) the sweep re-enqueues the deliveries pending for longer than `STALE_AFTER` sweep
intervals, and gives up (state "failed") on those tried `MAX_ATTEMPTS` times. It does the
same for incidents whose order context is still to be read. Running a job twice is harmless:
each one checks the state first.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import String, cast, select, update

from actions.deliveries import MAX_ATTEMPTS, PROCESS_DELIVERY
from plugin import periodic
from plugin.db import utcnow
from plugin.incidents import CONTEXT_PENDING, LOAD_CONTEXT
from plugin.models import Delivery, Incident
from plugin.models.delivery import FAILED, PENDING
from plugin.services import Services, current

log = logging.getLogger(__name__)

SWEEP = "actions.sweep.sweep"
# In sweep intervals (SWEEP_SECONDS): pending this long, a delivery was lost, not slow.
STALE_AFTER = 2
CONTEXT_STALE_AFTER = 10
BATCH = 500


def sweep() -> dict[str, int]:
    services = current()
    # The next run is scheduled first, so a failing sweep does not stop the sweeping.
    periodic.schedule_next(services, SWEEP, services.config.sweep_seconds)
    counts = {"deliveries": sweep_deliveries(services), "contexts": sweep_contexts(services)}
    counts["failed"] = give_up(services)
    if any(counts.values()):
        log.info("sweep: %s", counts)
    return counts


def sweep_deliveries(services: Services) -> int:
    cutoff = utcnow() - timedelta(seconds=STALE_AFTER * services.config.sweep_seconds)
    with services.db.session() as session:
        ids = session.scalars(
            select(Delivery.id)
            .where(
                Delivery.state == PENDING,
                Delivery.received_at < cutoff,
                Delivery.attempts < MAX_ATTEMPTS,
            )
            .order_by(Delivery.received_at)
            .limit(BATCH)
        ).all()
    for delivery_id in ids:
        # A job id of our own: the first job may still be waiting in RQ for its retry.
        services.queue.enqueue(PROCESS_DELIVERY, delivery_id, job_id=f"sweep-delivery-{delivery_id}")
    return len(ids)


def give_up(services: Services) -> int:
    with services.db.session() as session:
        result = session.execute(
            update(Delivery)
            .where(Delivery.state == PENDING, Delivery.attempts >= MAX_ATTEMPTS)
            .values(state=FAILED, processed_at=utcnow(), reason=f"gave up after {MAX_ATTEMPTS} attempts")
        )
        return int(getattr(result, "rowcount", 0) or 0)


def sweep_contexts(services: Services) -> int:
    cutoff = utcnow() - timedelta(seconds=CONTEXT_STALE_AFTER * services.config.sweep_seconds)
    with services.db.session() as session:
        candidates = session.execute(
            select(Incident.id, Incident.missing)
            .where(
                Incident.resolved_at.is_(None),
                Incident.opened_at < cutoff,
                # A cheap pre-filter on the JSON text (the same on SQLite and PostgreSQL).
                cast(Incident.missing, String).like(f'%"{CONTEXT_PENDING}"%'),
            )
            .order_by(Incident.opened_at)
            .limit(BATCH)
        ).all()
    ids = [incident_id for incident_id, missing in candidates if CONTEXT_PENDING in (missing or [])]
    for incident_id in ids:
        services.queue.enqueue(LOAD_CONTEXT, incident_id, job_id=f"sweep-context-{incident_id}")
    return len(ids)
