"""sweep_incidents(): finish what a lost job left undone.

An enqueue can be lost (Redis down at the wrong moment, a worker killed between committing an
incident and enqueueing its jobs, a job that used up its retries). The database says what is
done — the apology `Message` (sent or skipped), the `Task`, the "fixed" `Message` — so every
sweep interval (SWEEP_SECONDS: a minute by default) this job looks for incidents whose step is
still not done `STALE` intervals (2 minutes) after it was due and has no job of its own still
queued, scheduled (a retry, a delayed apology) or running, and enqueues that step again. Asking
the queue is what makes a short threshold safe: in a backlog a late step is usually just
waiting its turn. The steps are idempotent, so a re-enqueue that races a slow first run costs
nothing. An apology still not out a day after it was due is handed to a person (needs
attention) instead of being retried for ever.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import Session, aliased

from actions import order_tags
from actions.apology import CONTEXT_PENDING, flag
from plugin import periodic
from plugin.db import utcnow
from plugin.models import Incident, Message, OrderTagBatch, Shop, Task, TimelineEntry
from plugin.models.message import APOLOGY, FAILED, FIXED, PENDING, SENT, SKIPPED
from plugin.models.tag_batch import UNFINISHED
from plugin.services import Services, current
from plugin.settings import Settings, load

log = logging.getLogger(__name__)

SWEEP_INCIDENTS = "actions.incident_sweep.sweep_incidents"
# In sweep intervals (SWEEP_SECONDS).
INTERVAL = 1
STALE = 2  # a step this late after it was due, with no job of its own waiting, was lost
GIVE_UP = timedelta(hours=24)
LOOKBACK = timedelta(days=7)
BATCH = 500

SEND_APOLOGY = "actions.apology.send_apology"
OPEN_FOLLOW_UP = "actions.follow_up.open_follow_up"
NOTIFY_RESOLVED = "actions.notify.notify_resolved"
TAG_LATER = order_tags.TAG_LATER

# The job ids that may be doing each step (plugin/incidents.py, actions/apology.py,
# actions/order_context.py): while one of them waits or runs, the step is not lost. An admin's
# retry (ids stamped with the time) is not looked for: a step run twice is harmless.
APOLOGY_JOBS = ("first-{}", "apology-{}", "apology-{}-later", "context-{}")
FOLLOW_UP_JOBS = ("first-{}", "followup-{}")
NOTICE_JOBS = ("notify-{}",)
TAG_JOBS = ("first-{}", "followup-{}", "tag-{}")


@dataclass
class SweepReport:
    apologies: list[int] = field(default_factory=list)
    follow_ups: list[int] = field(default_factory=list)
    notices: list[int] = field(default_factory=list)
    tags: list[int] = field(default_factory=list)  # order tags that waited out a storm
    tag_batches: list[tuple[int, int]] = field(default_factory=list)  # (batch, round) gone quiet
    given_up: list[int] = field(default_factory=list)


def sweep_incidents() -> None:
    services = current()
    periodic.schedule_next(services, SWEEP_INCIDENTS, INTERVAL * services.config.sweep_seconds)
    report = sweep(services)
    if report.apologies or report.follow_ups or report.notices or report.tags or report.given_up:
        log.warning(
            "sweep re-enqueued %s apologies, %s follow-ups, %s notices, %s order tags; "
            "%s apologies handed to a person",
            len(report.apologies),
            len(report.follow_ups),
            len(report.notices),
            len(report.tags),
            len(report.given_up),
        )
    if report.tag_batches:
        log.warning("sweep resumed %s order tag batches", len(report.tag_batches))


def sweep(services: Services, now: datetime | None = None) -> SweepReport:
    now = now or utcnow()
    stale = timedelta(seconds=STALE * services.config.sweep_seconds)
    report = SweepReport()
    with services.db.session() as session:
        _apologies(session, now, stale, report)
        _follow_ups(session, now, stale, report)
        _notices(session, now, stale, report)
        _tags(session, now, stale, report)
        report.tag_batches = order_tags.unfinished(session, stale)
    report.apologies = _without_waiting_jobs(services, report.apologies, APOLOGY_JOBS)
    report.follow_ups = _without_waiting_jobs(services, report.follow_ups, FOLLOW_UP_JOBS)
    report.notices = _without_waiting_jobs(services, report.notices, NOTICE_JOBS)
    report.tags = _without_waiting_jobs(services, report.tags, TAG_JOBS)
    for incident_id in report.apologies:
        _enqueue(services, SEND_APOLOGY, incident_id, f"apology-{incident_id}")
    for incident_id in report.follow_ups:
        _enqueue(services, OPEN_FOLLOW_UP, incident_id, f"followup-{incident_id}")
    for incident_id in report.notices:
        _enqueue(services, NOTIFY_RESOLVED, incident_id, f"notify-{incident_id}")
    for incident_id in report.tags:
        _enqueue(services, TAG_LATER, incident_id, f"tag-{incident_id}")
    try:
        resumed = order_tags.resume(services, report.tag_batches)
    except Exception as error:  # the queue is down: the next sweep finds the same batches
        log.error("sweep could not resume order tag batches: %s", type(error).__name__)
        resumed = []
    report.tag_batches = [(i, r) for i, r in report.tag_batches if i in resumed]
    return report


def _without_waiting_jobs(services: Services, ids: list[int], patterns: tuple[str, ...]) -> list[int]:
    if not ids:
        return ids
    names = {i: [pattern.format(i) for pattern in patterns] for i in ids}
    try:
        waiting = services.queue.waiting([name for group in names.values() for name in group])
    except Exception as error:
        # The queue is down: nothing can be enqueued either; the next sweep looks again.
        log.error("sweep could not read the queue: %s", type(error).__name__)
        return []
    return [i for i in ids if not waiting.intersection(names[i])]


def _installed() -> ColumnElement[bool]:
    return and_(Shop.installed_at.is_not(None), Shop.uninstalled_at.is_(None))


def _apologies(session: Session, now: datetime, stale: timedelta, report: SweepReport) -> None:
    apology = aliased(Message)
    rows = session.execute(
        select(Incident, apology)
        .join(Shop, Shop.id == Incident.shop_id)
        .outerjoin(apology, and_(apology.incident_id == Incident.id, apology.kind == APOLOGY))
        .where(
            _installed(),
            Incident.needs_attention.is_(None),
            Incident.opened_at >= now - LOOKBACK,
            Incident.opened_at <= now - stale,
            (apology.id.is_(None)) | (apology.state == PENDING),
        )
        .order_by(Incident.id)
        .limit(BATCH)
    ).all()
    settings: dict[int, Settings] = {}
    for incident, message in rows:
        if CONTEXT_PENDING in (incident.missing or []):
            continue  # the intake's context job owns this step until the context is read
        if message is not None and message.sending_until is not None and message.sending_until > now:
            continue  # being sent right now
        if incident.shop_id not in settings:
            settings[incident.shop_id] = load(session, incident.shop_id)
        delay = timedelta(minutes=settings[incident.shop_id].kind(incident.kind).delay_minutes)
        due = incident.opened_at + delay
        if now - due < stale:
            continue
        if now - due > GIVE_UP:
            last_error = f" (last error: {message.error})" if message is not None and message.error else ""
            flag(
                session,
                incident,
                f"The apology has not gone out {int(GIVE_UP.total_seconds() // 3600)} hours after it was due"
                f"{last_error}; retry it once the cause is fixed.",
                "sweep",
                "apology_overdue",
            )
            report.given_up.append(incident.id)
            continue
        report.apologies.append(incident.id)


def _follow_ups(session: Session, now: datetime, stale: timedelta, report: SweepReport) -> None:
    rows = session.scalars(
        select(Incident.id)
        .join(Shop, Shop.id == Incident.shop_id)
        .outerjoin(Task, Task.incident_id == Incident.id)
        .where(
            _installed(),
            Task.id.is_(None),
            Incident.opened_at >= now - LOOKBACK,
            Incident.opened_at <= now - stale,
        )
        .order_by(Incident.id)
        .limit(BATCH)
    ).all()
    report.follow_ups.extend(rows)


def _notices(session: Session, now: datetime, stale: timedelta, report: SweepReport) -> None:
    apology = aliased(Message)
    fixed = aliased(Message)
    rows = session.execute(
        select(Incident.id, fixed.sending_until)
        .join(Shop, Shop.id == Incident.shop_id)
        .join(apology, and_(apology.incident_id == Incident.id, apology.kind == APOLOGY))
        .outerjoin(fixed, and_(fixed.incident_id == Incident.id, fixed.kind == FIXED))
        .where(
            _installed(),
            Incident.needs_attention.is_(None),
            Incident.resolved_at.is_not(None),
            Incident.resolved_at >= now - LOOKBACK,
            Incident.resolved_at <= now - stale,
            apology.state.in_((SENT, SKIPPED, FAILED)),
            (fixed.id.is_(None)) | (fixed.state == PENDING),
        )
        .order_by(Incident.id)
        .limit(BATCH)
    ).all()
    report.notices.extend(incident_id for incident_id, until in rows if until is None or until <= now)


def _tags(session: Session, now: datetime, stale: timedelta, report: SweepReport) -> None:
    """Order tags put off during a storm (or after a passing error) and still not added, where
    the settings still want them."""
    deferred = select(TimelineEntry.incident_id).where(
        TimelineEntry.event == "order_tag_deferred", TimelineEntry.at <= now - stale
    )
    rows = session.execute(
        select(Incident.id, Incident.shop_id, Shop.test_mode)
        .join(Shop, Shop.id == Incident.shop_id)
        .join(Task, Task.incident_id == Incident.id)
        .where(
            _installed(),
            Incident.needs_attention.is_(None),
            Incident.opened_at >= now - LOOKBACK,
            Task.order_tagged_at.is_(None),
            Incident.id.in_(deferred),
            # A shop's running batch takes the waiting tags when it ends (actions/order_tags.py).
            Incident.shop_id.not_in(select(OrderTagBatch.shop_id).where(OrderTagBatch.state.in_(UNFINISHED))),
        )
        .order_by(Incident.id)
        .limit(BATCH)
    ).all()
    settings: dict[int, Settings] = {}
    for incident_id, shop_id, test_mode in rows:
        if shop_id not in settings:
            settings[shop_id] = load(session, shop_id)
        shop_settings = settings[shop_id].shop
        if shop_settings.tag_orders and not (test_mode and not shop_settings.real_test_codes):
            report.tags.append(incident_id)


def _enqueue(services: Services, func: str, incident_id: int, job_id: str) -> None:
    try:
        services.queue.enqueue(func, incident_id, job_id=job_id)
    except Exception as error:
        # The queue is down: the next sweep finds the same work.
        log.error("sweep could not enqueue %s(%s): %s", func, incident_id, type(error).__name__)
