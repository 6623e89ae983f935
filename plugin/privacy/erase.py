"""customers/redact: erase one customer's personal data everywhere Amends keeps it, and keep
what is not personal (incident kinds, states and times, the number of emails and codes).

Two passes, both inside the caller's unit of work:
1. Targeted: the customer's incidents lose name, email, id, locale, consent and free-text
   details; their timeline entries keep event, time and cause but lose summary and data;
   emails lose address and text; outbox copies are deleted; tasks get a neutral title and no
   notes; exports for the customer are deleted; webhook payloads about them are dropped.
2. Sweep: every text and JSON column of every table scoped to the shop is searched for the
   customer's email, phone and id, and each mention is replaced, so a column added later
   (or a free-text field written by another feature) cannot keep a copy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from plugin.db import Base
from plugin.incidents import add_timeline
from plugin.models import DataExport, DiscountCode, Incident, OutboxEmail, Shop, Task, TimelineEntry
from plugin.privacy.customer import (
    REDACTED,
    Customer,
    find_deliveries,
    find_incidents,
    find_messages,
    timeline_webhook_ids,
)

log = logging.getLogger(__name__)

ERASED_SUMMARY = "(erased at the customer's request)"
# Detail values that describe the problem, not the person, survive erasure.
SAFE_DETAIL_KEYS = frozenset({"status", "kind", "currency", "compensation", "reason_code", "carrier"})


@dataclass
class Erasure:
    incidents: int = 0
    messages: int = 0
    outbox: int = 0
    tasks: int = 0
    exports: int = 0
    deliveries: int = 0
    swept: dict[str, int] = field(default_factory=dict)


def erase_customer(session: Session, shop: Shop, customer: Customer, source: str) -> Erasure:
    result = Erasure()
    incidents = find_incidents(session, shop.id, customer)
    ids = [i.id for i in incidents]
    webhook_ids = timeline_webhook_ids(session, ids)
    for incident in incidents:
        _erase_incident(incident, customer)
    if ids:
        for entry in session.scalars(select(TimelineEntry).where(TimelineEntry.incident_id.in_(ids))):
            entry.summary = ERASED_SUMMARY
            entry.data = {}
    result.incidents = len(incidents)

    message_ids = []
    for message in find_messages(session, shop.id, ids, customer):
        message_ids.append(message.message_id)
        message.to_address = None
        message.redirected_from = None
        message.subject = None
        message.text_body = None
        message.html_body = None
        message.error = customer.redact_text(message.error) if message.error else None
    result.messages = len(message_ids)
    outbox_match: list[ColumnElement[bool]] = [OutboxEmail.message_id.in_(message_ids)]
    if customer.email:
        outbox_match.append(func.lower(OutboxEmail.to_address) == customer.email)
    result.outbox = _deleted(
        session, delete(OutboxEmail).where(OutboxEmail.shop_id == shop.id, or_(*outbox_match))
    )

    for task in session.scalars(select(Task).where(Task.incident_id.in_(ids))):
        incident = next(i for i in incidents if i.id == task.incident_id)
        task.title = f"Follow up: order {incident.order_name or incident.order_id} ({incident.kind})"
        task.notes = None
        result.tasks += 1
    for code in session.scalars(select(DiscountCode).where(DiscountCode.incident_id.in_(ids))):
        code.error = customer.redact_text(code.error) if code.error else None

    export_match: list[ColumnElement[bool]] = []
    if customer.id is not None:
        export_match.append(DataExport.customer_id == customer.id)
    if customer.email:
        export_match.append(func.lower(DataExport.customer_email) == customer.email)
    if export_match:
        result.exports = _deleted(
            session, delete(DataExport).where(DataExport.shop_id == shop.id, or_(*export_match))
        )

    for delivery in find_deliveries(session, shop.domain, customer, webhook_ids):
        delivery.payload = None
        result.deliveries += 1
    session.flush()
    result.swept = sweep(session, shop.id, customer)
    for incident in incidents:
        add_timeline(
            session, incident, "customer_data_erased", "Customer data erased (customers/redact).", source
        )
    session.flush()
    log.info(
        "shop %s: customer erased (%d incidents, %d emails, %d outbox, %d payloads, %d exports)",
        shop.domain,
        result.incidents,
        result.messages,
        result.outbox,
        result.deliveries,
        result.exports,
    )
    return result


def _erase_incident(incident: Incident, customer: Customer) -> None:
    incident.customer_id = None
    incident.customer_first_name = None
    incident.customer_email = None
    incident.customer_locale = None
    incident.marketing_consent = None
    incident.details = _scrub(incident.details or {})
    if incident.needs_attention:
        incident.needs_attention = customer.redact_text(incident.needs_attention)


def _scrub(value: Any, key: str = "") -> Any:
    """Keep numbers, flags and the few descriptive values; drop every other text."""
    if isinstance(value, dict):
        return {k: _scrub(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, key) for v in value]
    if isinstance(value, str):
        return value if key in SAFE_DETAIL_KEYS and "@" not in value else REDACTED
    if "customer" in key and isinstance(value, int) and not isinstance(value, bool):
        return None
    return value


def sweep(session: Session, shop_id: int, customer: Customer) -> dict[str, int]:
    """Replace every mention of the customer in the shop's text and JSON columns."""
    needles = customer.needles()
    if not needles:
        return {}
    changed: dict[str, int] = {}
    incident_ids = select(Incident.id).where(Incident.shop_id == shop_id).scalar_subquery()
    for table in Base.metadata.sorted_tables:
        if "shop_id" in table.c:
            scope = table.c.shop_id == shop_id
        elif "incident_id" in table.c:
            scope = table.c.incident_id.in_(incident_ids)
        else:
            continue  # shops (the store's own data) and deliveries (by domain, above)
        columns = [c for c in table.c if isinstance(c.type, sa.String | sa.Text | sa.JSON)]
        if not columns:
            continue
        mentions = [
            func.lower(sa.cast(column, sa.Text)).like(f"%{needle.lower()}%")
            for column in columns
            for needle in needles
        ]
        keys = list(table.primary_key.columns)
        rows = session.execute(select(*keys, *columns).where(scope, or_(*mentions))).mappings().all()
        for row in rows:
            values = {c.name: _redact(row[c.name], customer) for c in columns}
            values = {name: v for name, v in values.items() if v != row[name]}
            if values:
                where = [k == row[k.name] for k in keys]
                session.execute(sa.update(table).where(*where).values(**values))
                changed[table.name] = changed.get(table.name, 0) + 1
    return changed


def _redact(value: Any, customer: Customer) -> Any:
    if isinstance(value, str):
        return customer.redact_text(value)
    if isinstance(value, dict):
        return {k: _redact(v, customer) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, customer) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and value == customer.id:
        return None
    return value


def _deleted(session: Session, statement: Any) -> int:
    from plugin.auth.token_lock import rowcount

    return rowcount(session.execute(statement.execution_options(synchronize_session=False)))
