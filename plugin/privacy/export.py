"""customers/data_request: everything Amends holds about one customer, as a DataExport row
the merchant downloads from the admin (`/api/data-exports/<id>`) and passes on.

It holds the customer's incidents with their timelines, the emails Amends sent (or withheld)
with their text, the discount codes, the follow-up tasks, and the recorded webhook payloads
that name the customer. A repeated data request (same id) updates its export.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from plugin.db import utcnow
from plugin.models import DataExport, DiscountCode, Incident, Shop, Task, TimelineEntry
from plugin.privacy.customer import (
    Customer,
    find_deliveries,
    find_incidents,
    find_messages,
    timeline_webhook_ids,
)


def build_export(session: Session, shop: Shop, customer: Customer, request_id: str | None) -> DataExport:
    incidents = find_incidents(session, shop.id, customer)
    ids = [i.id for i in incidents]
    messages = find_messages(session, shop.id, ids, customer)
    deliveries = [
        d
        for d in find_deliveries(session, shop.domain, customer, timeline_webhook_ids(session, ids))
        if d.topic not in ("customers/data_request", "customers/redact", "shop/redact")
    ]
    payload = {
        "about": "Everything Amends holds about this customer for this store.",
        "store": shop.domain,
        "generated_at": _value(utcnow()),
        "data_request_id": request_id,
        "customer": {"id": customer.id, "email": customer.email, "phone": customer.phone},
        "orders_requested": list(customer.order_ids),
        "incidents": [_incident(session, incident) for incident in incidents],
        "emails": [_row(m, MESSAGE_FIELDS) for m in messages],
        "webhooks_received": [
            {"topic": d.topic, "received_at": _value(d.received_at), "payload": _json(d.payload)}
            for d in deliveries
        ],
    }
    export = None
    if request_id:
        export = session.scalar(
            select(DataExport).where(DataExport.shop_id == shop.id, DataExport.data_request_id == request_id)
        )
    if export is None:
        export = DataExport(shop_id=shop.id, data_request_id=request_id)
        session.add(export)
    export.customer_id = customer.id
    export.customer_email = customer.email
    export.payload = payload
    export.requested_at = utcnow()
    session.flush()
    return export


INCIDENT_FIELDS = (
    "id",
    "kind",
    "state",
    "order_id",
    "order_name",
    "customer_id",
    "customer_first_name",
    "customer_email",
    "customer_locale",
    "marketing_consent",
    "details",
    "missing",
    "opened_at",
    "resolved_at",
    "resolved_by",
)
TIMELINE_FIELDS = ("at", "event", "summary", "source", "data")
MESSAGE_FIELDS = (
    "incident_id",
    "kind",
    "state",
    "to_address",
    "redirected_from",
    "test",
    "subject",
    "text_body",
    "html_body",
    "sent_at",
    "created_at",
)
CODE_FIELDS = ("code", "compensation", "value", "currency", "ends_at", "state", "test", "redeemed_at")
TASK_FIELDS = ("title", "status", "due_at", "notes", "created_at", "closed_at")


def _incident(session: Session, incident: Incident) -> dict[str, Any]:
    data = _row(incident, INCIDENT_FIELDS)
    entries = session.scalars(
        select(TimelineEntry).where(TimelineEntry.incident_id == incident.id).order_by(TimelineEntry.id)
    )
    data["timeline"] = [_row(e, TIMELINE_FIELDS) for e in entries]
    code = session.scalar(select(DiscountCode).where(DiscountCode.incident_id == incident.id))
    data["discount_code"] = _row(code, CODE_FIELDS) if code else None
    task = session.scalar(select(Task).where(Task.incident_id == incident.id))
    data["task"] = _row(task, TASK_FIELDS) if task else None
    return data


def _row(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: _value(getattr(obj, name)) for name in fields}


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _json(text: str | None) -> Any:
    try:
        return json.loads(text or "null")
    except ValueError:
        return text
