"""The admin's read side: lists, details and the overview figures, always for one shop."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from plugin.api import pagination
from plugin.api.schemas import (
    BoardTask,
    CodeOut,
    DayCount,
    ExportSummary,
    IncidentDetail,
    IncidentQuery,
    IncidentSummary,
    MessageOut,
    Money,
    OutboxItem,
    OverviewOut,
    ShopOut,
    TaskOut,
    TaskQuery,
    TimelineEntryOut,
)
from plugin.db import utcnow
from plugin.errors import RequestError
from plugin.models import DataExport, DiscountCode, Incident, Message, OutboxEmail, Shop, Task
from plugin.models.discount import CREATED, TEST
from plugin.models.incident import KINDS, STATES
from plugin.models.task import DONE, OPEN

M = TypeVar("M", bound=BaseModel)


def from_row(model: type[M], row: Any, **extra: Any) -> M:
    """A response model from an ORM row, plus the computed fields in `extra`."""
    values = {name: getattr(row, name) for name in model.model_fields if name not in extra}
    return model.model_validate({**values, **extra})


def get_incident(session: Session, shop_id: int, incident_id: int) -> Incident:
    incident = session.scalar(select(Incident).where(Incident.id == incident_id, Incident.shop_id == shop_id))
    if incident is None:
        raise RequestError(404, "No such incident in this shop.")
    return incident


def get_task(session: Session, shop_id: int, task_id: int) -> Task:
    task = session.scalar(select(Task).where(Task.id == task_id, Task.shop_id == shop_id))
    if task is None:
        raise RequestError(404, "No such task in this shop.")
    return task


def shop_out(shop: Shop, dev_mode: bool) -> ShopOut:
    return from_row(
        ShopOut, shop, dev_mode=dev_mode, admin_url=f"https://admin.shopify.com/store/{shop.store_handle}"
    )


# --- incidents ------------------------------------------------------------------------------


def list_incidents(session: Session, shop_id: int, query: IncidentQuery) -> tuple[list[Incident], str | None]:
    conditions: list[ColumnElement[bool]] = [Incident.shop_id == shop_id]
    if query.kind:
        conditions.append(Incident.kind == query.kind)
    if query.state == "open":
        conditions.append(Incident.resolved_at.is_(None))
    elif query.state == "needs_attention":
        conditions.append(Incident.needs_attention.is_not(None))
    elif query.state:
        conditions.append(Incident.state == query.state)
    if query.since and query.until and query.since > query.until:
        raise RequestError(422, "The date range is empty.", {"until": "must be on or after since"})
    if query.since:
        conditions.append(Incident.opened_at >= _day_start(query.since))
    if query.until:
        conditions.append(Incident.opened_at < _day_start(query.until) + timedelta(days=1))
    if query.q and query.q.strip():
        pattern = "%" + _escape_like(query.q.strip().lower()) + "%"
        conditions.append(
            or_(
                *(
                    func.lower(column).like(pattern, escape="\\")
                    for column in (Incident.order_name, Incident.customer_email, Incident.customer_first_name)
                )
            )
        )
    if query.cursor:
        opened_at, last_id = pagination.decode(query.cursor, datetime, int)
        conditions.append(
            or_(Incident.opened_at < opened_at, and_(Incident.opened_at == opened_at, Incident.id < last_id))
        )
    rows = list(
        session.scalars(
            select(Incident)
            .where(*conditions)
            .order_by(Incident.opened_at.desc(), Incident.id.desc())
            .limit(query.limit + 1)
        )
    )
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    cursor = pagination.encode(rows[-1].opened_at, rows[-1].id) if more else None
    return rows, cursor


def incident_summary(incident: Incident) -> IncidentSummary:
    return from_row(IncidentSummary, incident)


def incident_detail(session: Session, shop: Shop, incident: Incident) -> IncidentDetail:
    now = utcnow()
    messages = session.scalars(
        select(Message)
        .where(Message.incident_id == incident.id, Message.shop_id == shop.id)
        .order_by(Message.id)
    )
    code = session.scalar(
        select(DiscountCode).where(DiscountCode.incident_id == incident.id, DiscountCode.shop_id == shop.id)
    )
    task = session.scalar(select(Task).where(Task.incident_id == incident.id, Task.shop_id == shop.id))
    return from_row(
        IncidentDetail,
        incident,
        timeline=[from_row(TimelineEntryOut, entry) for entry in incident.timeline],
        messages=[from_row(MessageOut, message) for message in messages],
        code=from_row(CodeOut, code, redeemed=code.redeemed_at is not None) if code else None,
        task=task_out(task, now) if task else None,
        order_url=f"https://admin.shopify.com/store/{shop.store_handle}/orders/{incident.order_id}",
    )


# --- tasks ----------------------------------------------------------------------------------


def is_overdue(task: Task, now: datetime) -> bool:
    return task.status == OPEN and task.due_at is not None and task.due_at < now


def task_out(task: Task, now: datetime) -> TaskOut:
    return from_row(TaskOut, task, overdue=is_overdue(task, now))


def board_task(task: Task, incident: Incident, now: datetime) -> BoardTask:
    return from_row(BoardTask, task, overdue=is_overdue(task, now), incident=incident_summary(incident))


def list_tasks(session: Session, shop_id: int, query: TaskQuery) -> tuple[list[BoardTask], str | None]:
    now = utcnow()
    conditions: list[ColumnElement[bool]] = [Task.shop_id == shop_id]
    order: list[Any]
    if query.status == "done":
        conditions.append(Task.status == DONE)
        order = [Task.closed_at.desc(), Task.id.desc()]
    else:
        if query.status == "open":
            conditions += [Task.status == OPEN, or_(Task.due_at.is_(None), Task.due_at >= now)]
        elif query.status == "overdue":
            conditions += [Task.status == OPEN, Task.due_at < now]
        # Open work first, soonest due first; then what is done.
        order = [Task.status.desc(), Task.due_at.is_(None), Task.due_at, Task.id]
    # Tasks change column as they are worked, so the board pages by position.
    (offset,) = pagination.decode(query.cursor, int) if query.cursor else (0,)
    rows = list(
        session.execute(
            select(Task, Incident)
            .join(Incident, Incident.id == Task.incident_id)
            .where(*conditions, Incident.shop_id == shop_id)
            .order_by(*order)
            .offset(offset)
            .limit(query.limit + 1)
        )
    )
    more = len(rows) > query.limit
    items = [board_task(row[0], row[1], now) for row in rows[: query.limit]]
    return items, pagination.encode(offset + query.limit) if more else None


# --- overview -------------------------------------------------------------------------------


def overview(session: Session, shop: Shop, dev_mode: bool) -> OverviewOut:
    now = utcnow()
    week = now - timedelta(days=7)
    by_kind: dict[str, dict[str, int]] = {kind: dict.fromkeys(STATES, 0) for kind in KINDS}
    for kind, state, count in session.execute(
        select(Incident.kind, Incident.state, func.count())
        .where(Incident.shop_id == shop.id, Incident.opened_at >= week)
        .group_by(Incident.kind, Incident.state)
    ):
        by_kind.setdefault(kind, {})[state] = count

    open_tasks = session.scalar(select(func.count()).where(Task.shop_id == shop.id, Task.status == OPEN)) or 0
    overdue = (
        session.scalar(
            select(func.count()).where(Task.shop_id == shop.id, Task.status == OPEN, Task.due_at < now)
        )
        or 0
    )
    month = now - timedelta(days=30)
    codes = and_(
        DiscountCode.shop_id == shop.id,
        DiscountCode.created_at >= month,
        DiscountCode.state.in_([CREATED, TEST]),
    )
    sent = session.scalar(select(func.count()).where(codes)) or 0
    redeemed = session.scalar(select(func.count()).where(codes, DiscountCode.redeemed_at.is_not(None))) or 0
    revenue = [
        Money(currency=currency or shop.currency or "", amount=Decimal(total or 0).quantize(Decimal("0.01")))
        for currency, total in session.execute(
            select(DiscountCode.redeemed_currency, func.sum(DiscountCode.redeemed_amount))
            .where(codes, DiscountCode.redeemed_at.is_not(None))
            .group_by(DiscountCode.redeemed_currency)
        )
    ]
    attention = (
        session.scalar(
            select(func.count()).where(Incident.shop_id == shop.id, Incident.needs_attention.is_not(None))
        )
        or 0
    )
    return OverviewOut(
        shop=shop_out(shop, dev_mode),
        since=week,
        incidents=by_kind,
        incidents_total=sum(sum(states.values()) for states in by_kind.values()),
        open_tasks=open_tasks,
        overdue_tasks=overdue,
        codes_sent=sent,
        codes_redeemed=redeemed,
        redeemed_revenue=revenue,
        needs_attention=attention,
        daily=_daily(session, shop.id, now.date(), 14),
    )


def _daily(session: Session, shop_id: int, today: date, days: int) -> list[DayCount]:
    first = today - timedelta(days=days - 1)
    counts: dict[date, dict[str, int]] = {
        first + timedelta(days=i): dict.fromkeys(KINDS, 0) for i in range(days)
    }
    # Grouped in Python: the few hundred rows of two weeks cost less than dialect-specific SQL.
    for kind, opened_at in session.execute(
        select(Incident.kind, Incident.opened_at).where(
            Incident.shop_id == shop_id, Incident.opened_at >= _day_start(first)
        )
    ):
        day = opened_at.astimezone(UTC).date()
        if day in counts and kind in counts[day]:
            counts[day][kind] += 1
    return [DayCount.model_validate({"day": day, **kinds}) for day, kinds in counts.items()]


# --- outbox and exports ---------------------------------------------------------------------


def list_outbox(
    session: Session, shop_id: int, cursor: str | None, limit: int
) -> tuple[list[OutboxItem], str | None]:
    conditions: list[ColumnElement[bool]] = [OutboxEmail.shop_id == shop_id]
    if cursor:
        (last_id,) = pagination.decode(cursor, int)
        conditions.append(OutboxEmail.id < last_id)
    rows = list(
        session.scalars(
            select(OutboxEmail).where(*conditions).order_by(OutboxEmail.id.desc()).limit(limit + 1)
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return [from_row(OutboxItem, row) for row in rows], pagination.encode(rows[-1].id) if more else None


def list_exports(session: Session, shop_id: int) -> list[ExportSummary]:
    rows = session.scalars(
        select(DataExport)
        .where(DataExport.shop_id == shop_id)
        .order_by(DataExport.requested_at.desc())
        .limit(200)
    )
    return [from_row(ExportSummary, row) for row in rows]


def get_export(session: Session, shop_id: int, export_id: int) -> DataExport:
    export = session.scalar(
        select(DataExport).where(DataExport.id == export_id, DataExport.shop_id == shop_id)
    )
    if export is None:
        raise RequestError(404, "No such data request in this shop.")
    return export


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
