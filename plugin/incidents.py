"""The incident and its lifecycle: detected → apologised → (task open) → resolved → customer told.

Every change goes through here so that each one lands on the timeline with its time and cause.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from plugin.db import utcnow
from plugin.jobs import enqueue_after_commit
from plugin.models import Incident, IncidentKey, Settlement, Shop, TimelineEntry
from plugin.models.incident import DETECTED, RESOLVED
from plugin.services import Services

if TYPE_CHECKING:
    from plugin.shopify.orders import OrderContext

log = logging.getLogger(__name__)

NOTIFY_RESOLVED = "actions.notify.notify_resolved"


def add_timeline(
    session: Session,
    incident: Incident,
    event: str,
    summary: str,
    source: str,
    *,
    webhook_id: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> TimelineEntry:
    """`source` names the cause: "webhook:refunds/create", "job:send_apology",
    "api:discountCodeBasicCreate", "staff:<name>", "scan"."""
    entry = TimelineEntry(
        incident_id=incident.id,
        event=event,
        summary=summary,
        source=source,
        webhook_id=webhook_id,
        data=data or {},
        at=at or utcnow(),
    )
    session.add(entry)
    return entry


def resolve(
    session: Session,
    services: Services,
    incident: Incident,
    *,
    cause: str,
    summary: str,
    webhook_id: str | None = None,
    at: datetime | None = None,
) -> bool:
    """Resolve an open incident and, once committed, send the "it's fixed" notice.
    False when it was already resolved (a repeated signal changes nothing)."""
    if incident.resolved_at is not None:
        return False
    incident.resolved_at = at or utcnow()
    incident.resolved_by = cause
    incident.state = RESOLVED
    incident.open_key = None  # a new problem with this order may open a new incident
    add_timeline(session, incident, "resolved", summary, cause, webhook_id=webhook_id, at=at)
    enqueue_after_commit(session, services, NOTIFY_RESOLVED, incident.id, job_id=f"notify-{incident.id}")
    return True


APOLOGY = "actions.apology.send_apology"
FOLLOW_UP = "actions.follow_up.open_follow_up"
# Both of the above, the apology first, in one job (for an incident opened with its context).
FIRST_RESPONSE = "actions.first_response.first_response"
LOAD_CONTEXT = "actions.order_context.load_order_context"
# On `missing` while the order's context could not be read yet (it is retried).
CONTEXT_PENDING = "order_context"


@dataclass
class Signal:
    """One business event applied to an incident: a webhook, a scan finding, a job.

    `key` is its business key ("fulfillment_event:123", "refund:456"): a key applied once is
    never applied again, whatever webhook id carries it. `at` is when it happened (event
    time, used for ordering), not when it arrived.
    """

    key: str
    at: datetime
    source: str
    summary: str
    event: str = "signal"
    webhook_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    incident: Incident | None
    created: bool = False
    duplicate: bool = False


def incident_for_key(session: Session, shop_id: int, key: str) -> Incident | None:
    """The incident a business key was applied to, or None when it never was."""
    return session.scalar(
        select(Incident)
        .join(IncidentKey, IncidentKey.incident_id == Incident.id)
        .where(IncidentKey.shop_id == shop_id, IncidentKey.key == key)
    )


def key_applied(session: Session, shop_id: int, key: str) -> bool:
    found = session.scalar(
        select(IncidentKey.id).where(IncidentKey.shop_id == shop_id, IncidentKey.key == key)
    )
    return found is not None


def find_open(session: Session, shop_id: int, order_id: int, kind: str) -> Incident | None:
    return session.scalar(
        select(Incident).where(Incident.shop_id == shop_id, Incident.open_key == open_key(order_id, kind))
    )


def open_key(order_id: int, kind: str) -> str:
    return f"{order_id}:{kind}"


def note_key(session: Session, incident: Incident, signal: Signal) -> None:
    """Record that `signal` was applied to `incident` (its business key, the newest event time),
    without a timeline entry: for a caller whose own step writes one (e.g. `resolve`)."""
    session.add(IncidentKey(shop_id=incident.shop_id, key=signal.key, incident_id=incident.id))
    if incident.last_event_at is None or signal.at > incident.last_event_at:
        incident.last_event_at = signal.at


def apply_signal(session: Session, incident: Incident, signal: Signal) -> TimelineEntry:
    """Record `signal` on `incident`: its business key, a timeline entry, the newest event time."""
    note_key(session, incident, signal)
    return add_timeline(
        session,
        incident,
        signal.event,
        signal.summary,
        signal.source,
        webhook_id=signal.webhook_id,
        data={**signal.data, "key": signal.key},
        at=signal.at,
    )


def open_or_join(
    session: Session,
    services: Services,
    shop: Shop,
    kind: str,
    order_id: int,
    signal: Signal,
    *,
    context: OrderContext | None = None,
    context_error: str | None = None,
    details: dict[str, Any] | None = None,
    also_keys: tuple[str, ...] = (),
) -> Outcome:
    """Open the order's incident of `kind`, or join the one already open for it.

    Idempotent on `signal.key` (and `also_keys`, e.g. a refund's return id): a key already
    applied changes nothing and reports `duplicate`. A new incident takes `details` and the order's
    `context` (read by the caller before its transaction); once it commits, the delivery's job
    (or a job of its own, `first-<id>`) sends the apology and then opens the follow-up task.
    When the context could not be read (`context_error`), the incident is recorded anyway with
    `missing=["order_context"]`, the follow-up is enqueued, and a job reads the context again
    and then enqueues the apology.
    """
    existing = incident_for_key(session, shop.id, signal.key)
    if existing is not None:
        return Outcome(existing, duplicate=True)
    incident = find_open(session, shop.id, order_id, kind)
    if incident is not None:
        apply_signal(session, incident, signal)
        _remember_keys(session, incident, also_keys)
        return Outcome(incident)

    incident = Incident(
        shop_id=shop.id,
        kind=kind,
        state=DETECTED,
        open_key=open_key(order_id, kind),
        order_id=order_id,
        details=dict(details or {}),
        missing=[],
        opened_at=utcnow(),
        last_event_at=signal.at,
    )
    if context is not None:
        apply_context(incident, context)
    elif context_error is not None:
        incident.missing = [CONTEXT_PENDING]
        incident.details = {**incident.details, "context_error": context_error}
    else:
        incident.missing = ["order"]  # Shopify knows no such order
    session.add(incident)
    session.flush()
    apply_signal(session, incident, replace(signal, event="detected"))
    _remember_keys(session, incident, also_keys)
    if CONTEXT_PENDING in incident.missing:
        enqueue_after_commit(session, services, FOLLOW_UP, incident.id, job_id=f"followup-{incident.id}")
        enqueue_after_commit(session, services, LOAD_CONTEXT, incident.id, job_id=f"context-{incident.id}")
    else:
        # At once, in the delivery's own job when it runs it (plugin/jobs.py), else ahead of
        # the queue: in a storm, the deliveries still waiting would otherwise take the shop's
        # Admin API budget (their order queries) before any customer's apology.
        enqueue_after_commit(
            session,
            services,
            FIRST_RESPONSE,
            incident.id,
            job_id=f"first-{incident.id}",
            front=True,
            inline=True,
        )
    log.info("shop %s: incident %s (%s) opened for order %s", shop.domain, incident.id, kind, order_id)
    return Outcome(incident, created=True)


def apply_context(incident: Incident, context: OrderContext) -> None:
    """Copy the order's context onto the incident; `missing` names what Shopify withheld."""
    incident.order_name = context.order_name or incident.order_name
    incident.customer_id = context.customer_id
    incident.customer_first_name = context.first_name
    incident.customer_email = context.email
    incident.customer_locale = context.locale
    incident.marketing_consent = context.marketing_consent
    incident.missing = list(context.missing)
    details = dict(incident.details or {})
    details.pop("context_error", None)
    details["order"] = {
        "fulfillment_status": context.fulfillment_status,
        "shipments": [s.as_json() for s in context.shipments],
    }
    incident.details = details


def settlement(session: Session, shop_id: int, key: str) -> Settlement | None:
    return session.scalar(select(Settlement).where(Settlement.shop_id == shop_id, Settlement.key == key))


def settle(session: Session, shop_id: int, key: str, at: datetime, incident: Incident | None = None) -> None:
    """Remember that `key` ("shipment:<id>", "return:<id>") finished at `at` (the latest wins)."""
    row = settlement(session, shop_id, key)
    if row is None:
        session.add(
            Settlement(shop_id=shop_id, key=key, at=at, incident_id=incident.id if incident else None)
        )
        return
    if at > row.at:
        row.at = at
    if incident is not None:
        row.incident_id = incident.id


def settled_after(session: Session, shop_id: int, key: str, at: datetime) -> Settlement | None:
    """The settlement of `key` when it happened at or after `at`: a signal from `at` is stale."""
    row = settlement(session, shop_id, key)
    return row if row is not None and row.at >= at else None


def _remember_keys(session: Session, incident: Incident, keys: tuple[str, ...]) -> None:
    for key in keys:
        if not key_applied(session, incident.shop_id, key):
            session.add(IncidentKey(shop_id=incident.shop_id, key=key, incident_id=incident.id))
