"""What staff do from the admin: work a task, resolve an incident, retry a failed step.

Each change lands on the incident's timeline with "staff" as its cause. Jobs are named by
string (plugin never imports actions) and enqueued only once the change is committed.
"""

from __future__ import annotations

from datetime import UTC

from sqlalchemy import select
from sqlalchemy.orm import Session

from plugin import incidents
from plugin.api.schemas import TaskUpdate
from plugin.db import utcnow
from plugin.errors import RequestError
from plugin.jobs import enqueue_after_commit
from plugin.models import DiscountCode, Incident, Message, Task
from plugin.models.discount import FAILED as CODE_FAILED
from plugin.models.message import APOLOGY, FIXED, SENT, SKIPPED
from plugin.models.task import DONE, OPEN
from plugin.services import Services

SEND_APOLOGY = "actions.apology.send_apology"
OPEN_FOLLOW_UP = "actions.follow_up.open_follow_up"
NOTIFY_RESOLVED = incidents.NOTIFY_RESOLVED


def update_task(session: Session, task: Task, incident: Incident, changes: TaskUpdate, by: str) -> None:
    sent = changes.model_fields_set
    notes: list[str] = []
    if "assignee" in sent and changes.assignee != task.assignee:
        task.assignee = (changes.assignee or "").strip() or None
        notes.append(f"assigned to {task.assignee}" if task.assignee else "unassigned")
    if "due_at" in sent and changes.due_at != task.due_at:
        task.due_at = changes.due_at.astimezone(UTC) if changes.due_at else None
        notes.append(f"due {task.due_at:%Y-%m-%d %H:%M} UTC" if task.due_at else "no due time")
    if "notes" in sent and changes.notes != task.notes:
        task.notes = changes.notes or None
        notes.append("notes edited")
    if notes:
        summary = "Task " + ", ".join(notes) + "."
        incidents.add_timeline(session, incident, "task_updated", summary, by)


def close_task(session: Session, services: Services, task: Task, incident: Incident, by: str) -> None:
    """Close a task; its incident resolves and the "fixed" notice follows the commit."""
    if task.status == DONE:
        raise RequestError(409, "This task is already done.")
    _close(session, task, incident, by)
    incidents.resolve(
        session, services, incident, cause=by, summary="Resolved: the follow-up task was closed."
    )


def resolve_incident(session: Session, services: Services, incident: Incident, by: str) -> None:
    if incident.resolved_at is not None:
        raise RequestError(409, "This incident is already resolved.")
    task = session.scalar(
        select(Task).where(Task.incident_id == incident.id, Task.shop_id == incident.shop_id)
    )
    if task is not None and task.status == OPEN:
        _close(session, task, incident, by)
    incidents.resolve(session, services, incident, cause=by, summary="Resolved by staff from the admin.")


def _close(session: Session, task: Task, incident: Incident, by: str) -> None:
    task.status = DONE
    task.closed_at = utcnow()
    task.closed_by = by
    incidents.add_timeline(session, incident, "task_closed", "Follow-up task closed.", by)


def retry(session: Session, services: Services, incident: Incident, by: str) -> list[str]:
    """Clear "needs attention" and start again every step that has not finished. The jobs are
    idempotent (one code, one apology, one task and one notice per incident), so a step that
    did finish in the meantime changes nothing."""
    if incident.needs_attention is None:
        raise RequestError(409, "Nothing on this incident needs attention.")
    jobs = unfinished_steps(session, incident)
    if not jobs:
        raise RequestError(409, "Every step of this incident has finished; nothing to retry.")
    reason = incident.needs_attention
    incident.needs_attention = None
    incidents.add_timeline(
        session,
        incident,
        "retried",
        f"Retried from the admin ({', '.join(job.rsplit('.', 1)[-1] for job in jobs)}) after: {reason}",
        by,
        data={"jobs": jobs},
    )
    for job in jobs:
        enqueue_after_commit(session, services, job, incident.id)
    return jobs


def unfinished_steps(session: Session, incident: Incident) -> list[str]:
    messages = {
        message.kind: message
        for message in session.scalars(
            select(Message).where(Message.incident_id == incident.id, Message.shop_id == incident.shop_id)
        )
    }
    code = session.scalar(select(DiscountCode).where(DiscountCode.incident_id == incident.id))
    task = session.scalar(select(Task).where(Task.incident_id == incident.id))
    jobs = []
    apology = messages.get(APOLOGY)
    if (apology is None or apology.state not in (SENT, SKIPPED)) or (
        code is not None and code.state == CODE_FAILED
    ):
        jobs.append(SEND_APOLOGY)
    if task is None:
        jobs.append(OPEN_FOLLOW_UP)
    fixed = messages.get(FIXED)
    if incident.resolved_at is not None and (fixed is None or fixed.state not in (SENT, SKIPPED)):
        jobs.append(NOTIFY_RESOLVED)
    return jobs
