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
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import String, cast, select, update

from actions.deliveries import DELIVERY_JOB, MAX_ATTEMPTS, PROCESS_DELIVERY
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
# The job ids a delivery's job may have: the web's hand-off's, then the sweep's own.
DELIVERY_JOBS = (DELIVERY_JOB, f"sweep-{DELIVERY_JOB}")


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
    return _enqueue_unless_waiting(services, PROCESS_DELIVERY, ids, DELIVERY_JOBS)


def catch_up() -> int:
    """Every pending delivery whose job is not waiting, enqueued whatever its age: the
    listener (plugin/listener.py) runs this when it starts leading, for the deliveries
    committed while no worker listened."""
    services = current()
    enqueued, after = 0, 0
    while True:
        with services.db.session() as session:
            ids = session.scalars(
                select(Delivery.id)
                .where(Delivery.state == PENDING, Delivery.attempts < MAX_ATTEMPTS, Delivery.id > after)
                .order_by(Delivery.id)
                .limit(BATCH)
            ).all()
        if not ids:
            break
        enqueued += _enqueue_unless_waiting(services, PROCESS_DELIVERY, ids, DELIVERY_JOBS)
        after = ids[-1]
    if enqueued:
        log.info("catch-up: %d pending deliveries enqueued", enqueued)
    return enqueued


def _enqueue_unless_waiting(
    services: Services, func: str, ids: Sequence[int], prefixes: Sequence[str]
) -> int:
    """Enqueue `func(id)` under a job id of the sweep's own (`<last prefix>-<id>`), except for
    ids whose job is still waiting or running under any of `prefixes`: in a backlog, work
    older than the cutoff is often just queued, and enqueueing it again on every pass would
    run it twice or more."""
    names = {i: [f"{prefix}-{i}" for prefix in prefixes] for i in ids}
    waiting = services.queue.waiting([name for group in names.values() for name in group])
    enqueued = 0
    for i in ids:
        if not waiting.intersection(names[i]):
            services.queue.enqueue(func, i, job_id=names[i][-1])
            enqueued += 1
    return enqueued


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
    return _enqueue_unless_waiting(services, LOAD_CONTEXT, ids, ("context", "sweep-context"))
