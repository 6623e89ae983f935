"""The incident and its lifecycle: detected → apologised → (task open) → resolved → customer told.

Every change goes through here so that each one lands on the timeline with its time and cause.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from plugin.db import utcnow
from plugin.jobs import enqueue_after_commit
from plugin.models import Incident, TimelineEntry
from plugin.models.incident import RESOLVED
from plugin.services import Services

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
