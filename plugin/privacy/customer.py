"""The customer a compliance webhook names, and finding what Amends holds about them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Text, cast, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from plugin.models import Delivery, Incident, Message, TimelineEntry


@dataclass(frozen=True)
class Customer:
    """As the payload names them: `customer {id, email, phone}` and the orders concerned."""

    id: int | None
    email: str | None
    phone: str | None
    order_ids: tuple[int, ...] = ()

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Customer:
        customer = payload.get("customer") or {}
        orders = payload.get("orders_to_redact") or payload.get("orders_requested") or []
        email = str(customer.get("email") or "").strip() or None
        phone = str(customer.get("phone") or "").strip() or None
        return cls(
            id=_int(customer.get("id")),
            email=email.lower() if email else None,
            phone=phone,
            order_ids=tuple(n for n in (_int(o) for o in orders) if n is not None),
        )

    @property
    def known(self) -> bool:
        return bool(self.id or self.email or self.phone or self.order_ids)

    def needles(self) -> list[str]:
        """Strings whose presence in a text means it is about this customer."""
        return [n for n in (self.email, self.phone, str(self.id) if self.id else None) if n]

    def mentioned_in(self, text: str | None) -> bool:
        if not text:
            return False
        lowered = text.lower()
        if self.email and self.email in lowered:
            return True
        if self.phone and self.phone in text:
            return True
        return self.id is not None and re.search(rf"(?<!\d){self.id}(?!\d)", text) is not None

    def redact_text(self, text: str) -> str:
        if self.email:
            text = re.sub(re.escape(self.email), REDACTED, text, flags=re.IGNORECASE)
        if self.phone:
            text = text.replace(self.phone, REDACTED)
        if self.id is not None:
            text = re.sub(rf"(?<!\d){self.id}(?!\d)", REDACTED, text)
        return text


REDACTED = "[redacted]"


def find_incidents(session: Session, shop_id: int, customer: Customer) -> list[Incident]:
    conditions: list[ColumnElement[bool]] = []
    if customer.id is not None:
        conditions.append(Incident.customer_id == customer.id)
    if customer.email:
        conditions.append(func.lower(Incident.customer_email) == customer.email)
    if customer.order_ids:
        conditions.append(Incident.order_id.in_(customer.order_ids))
    if not conditions:
        return []
    query = select(Incident).where(Incident.shop_id == shop_id, or_(*conditions)).order_by(Incident.id)
    return list(session.scalars(query))


def find_messages(
    session: Session, shop_id: int, incident_ids: list[int], customer: Customer
) -> list[Message]:
    """Emails for the customer's incidents, or addressed to them."""
    conditions: list[ColumnElement[bool]] = [Message.incident_id.in_(incident_ids)]
    if customer.email:
        conditions.append(func.lower(Message.to_address) == customer.email)
        conditions.append(func.lower(Message.redirected_from) == customer.email)
    query = select(Message).where(Message.shop_id == shop_id, or_(*conditions)).order_by(Message.id)
    return list(session.scalars(query))


def timeline_webhook_ids(session: Session, incident_ids: list[int]) -> list[str]:
    """The webhook deliveries that fed these incidents."""
    query = select(TimelineEntry.webhook_id).where(
        TimelineEntry.incident_id.in_(incident_ids), TimelineEntry.webhook_id.is_not(None)
    )
    return [w for w in session.scalars(query) if w]


def find_deliveries(
    session: Session, shop_domain: str, customer: Customer, webhook_ids: Iterable[str] = ()
) -> list[Delivery]:
    """The shop's recorded webhook payloads that are about the customer."""
    patterns = [f"%{n}%" for n in customer.needles()] + [f"%{n}%" for n in customer.order_ids]
    conditions: list[ColumnElement[bool]] = [
        func.lower(cast(Delivery.payload, Text)).like(p.lower()) for p in patterns
    ]
    ids = list(webhook_ids)
    if ids:
        conditions.append(Delivery.webhook_id.in_(ids))
    if not conditions:
        return []
    candidates = session.scalars(
        select(Delivery).where(
            Delivery.shop_domain == shop_domain, Delivery.payload.is_not(None), or_(*conditions)
        )
    )
    return [d for d in candidates if d.webhook_id in ids or _about(d.payload, customer)]


def _about(payload: str | None, customer: Customer) -> bool:
    if customer.mentioned_in(payload):
        return True
    if not customer.order_ids or not payload:
        return False
    try:
        data = json.loads(payload)
    except ValueError:
        return False
    return isinstance(data, dict) and _order_of(data) in customer.order_ids


def _order_of(data: dict[str, Any]) -> int | None:
    """The order a webhook payload is about (refunds, returns, events, or the order itself)."""
    if "order_id" in data:
        return _int(data["order_id"])
    order = data.get("order")
    if isinstance(order, dict):
        return _int(order.get("id"))
    gid = data.get("admin_graphql_api_id")
    if isinstance(gid, str) and gid.startswith("gid://shopify/Order/"):
        return _int(data.get("id"))
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
