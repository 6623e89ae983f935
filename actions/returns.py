"""Returns: `returns/request` opens a return incident; approve, decline, update, cancel and
reopen update its state and timeline; `returns/close` resolves it.

The return payloads carry no time of their own, so X-Shopify-Triggered-At orders them; a
signal older than the newest one applied to that return is written on the timeline but
changes no state. A close, cancel or decline that arrives before the request is remembered
(a settlement), so the late request opens nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from actions.deliveries import DeliveryContext
from actions.signals import as_int, parse_time, read_context
from plugin import incidents
from plugin.incidents import Signal
from plugin.models import Incident
from plugin.models.incident import RETURN

# Topic → the return's status after it (returns/update keeps the payload's own status).
STATUS = {
    "returns/request": "requested",
    "returns/approve": "open",
    "returns/decline": "declined",
    "returns/cancel": "canceled",
    "returns/reopen": "open",
    "returns/close": "closed",
}
OPENING = ("returns/request", "returns/approve")
FINISHING = ("returns/close", "returns/cancel", "returns/decline")
ACTIVE = ("requested", "open")
VERBS = {
    "returns/request": "requested",
    "returns/approve": "approved",
    "returns/decline": "declined",
    "returns/update": "updated",
    "returns/cancel": "canceled",
    "returns/reopen": "reopened",
    "returns/close": "closed",
}


def return_key(return_id: int) -> str:
    return f"return:{return_id}"


def on_return_event(ctx: DeliveryContext) -> str | None:
    p = ctx.payload
    return_id = as_int(p.get("id"))
    if return_id is None:
        return "the return has no id"
    order = _object(p.get("order"))
    order_id = as_int(order.get("id")) or as_int(p.get("order_id"))
    topic = ctx.topic
    status = STATUS.get(topic) or str(p.get("status") or "updated").lower()
    at = ctx.received_at
    info = _return_info(p)
    name = info.get("name") or f"#{return_id}"
    detail = f": {info['why']}" if info.get("why") and topic in ("returns/request", "returns/decline") else ""
    signal = Signal(
        key=f"return:{return_id}:{topic.split('/')[1]}:{_event_marker(ctx)}",
        at=at,
        source=ctx.source,
        summary=f"Return {name} {VERBS.get(topic, 'changed')}{detail}",
        webhook_id=ctx.webhook_id,
        data={"return_id": return_id, "status": status},
    )
    session, shop = ctx.session, ctx.shop
    if incidents.key_applied(session, shop.id, signal.key):
        return f"already applied ({signal.key})"

    incident = incidents.incident_for_key(session, shop.id, return_key(return_id))
    if incident is None:
        if topic not in OPENING or order_id is None:
            if topic in FINISHING:
                incidents.settle(session, shop.id, return_key(return_id), at)
            return f"no incident for return {return_id}"
        settled = incidents.settled_after(session, shop.id, return_key(return_id), at)
        if settled is not None:
            return f"return {return_id} already finished at {settled.at:%Y-%m-%d %H:%M} UTC"
        context = error = None
        if incidents.find_open(session, shop.id, order_id, RETURN) is None:
            context, error = read_context(ctx, shop.domain, order_id)
        outcome = incidents.open_or_join(
            session,
            ctx.services,
            shop,
            RETURN,
            order_id,
            signal,
            context=context,
            context_error=error,
            details={"summary": "you asked to return part of your order", **_clean(info)},
            also_keys=(return_key(return_id),),
        )
        if outcome.incident is None or outcome.duplicate:
            return f"already applied ({signal.key})"
        _record_return(outcome.incident, return_id, status, at, info)
        return None

    known = ((incident.details or {}).get("returns") or {}).get(str(return_id))
    if known is not None and (parse_time(known.get("at")) or at) > at:
        incidents.apply_signal(
            session,
            incident,
            replace(signal, event="stale_signal", summary=f"{signal.summary} (older than its last news)"),
        )
        return None
    _record_return(incident, return_id, status, at, info)
    if topic in FINISHING:
        incidents.settle(session, shop.id, return_key(return_id), at, incident)
    if topic == "returns/close" and incident.is_open and not _active_returns(incident):
        incidents.note_key(session, incident, signal)
        incidents.resolve(
            session,
            ctx.services,
            incident,
            cause=ctx.source,
            summary=signal.summary,
            webhook_id=ctx.webhook_id,
            at=at,
        )
        return None
    if topic == "returns/reopen" and not incident.is_open:
        incident.needs_attention = f"Return {name} was reopened after this incident was resolved."
    incidents.apply_signal(session, incident, replace(signal, event=f"return_{status}"))
    return None


def _record_return(
    incident: Incident, return_id: int, status: str, at: datetime, info: dict[str, Any]
) -> None:
    details = dict(incident.details or {})
    returns = dict(details.get("returns") or {})
    known = returns.get(str(return_id)) or {}
    returns[str(return_id)] = {
        **known,
        **_clean(info),
        "status": status,
        "at": at.astimezone(UTC).isoformat(),
    }
    details["returns"] = returns
    incident.details = details


def _active_returns(incident: Incident) -> list[str]:
    returns = (incident.details or {}).get("returns") or {}
    return [rid for rid, r in returns.items() if r.get("status") in ACTIVE]


def _return_info(p: dict[str, Any]) -> dict[str, Any]:
    """What a person reading the incident wants: the return's name, reasons and notes."""
    reasons, notes = [], []
    for item in p.get("return_line_items") or []:
        if not isinstance(item, dict):
            continue
        if item.get("return_reason"):
            reasons.append(str(item["return_reason"]).replace("_", " ").lower())
        if item.get("customer_note"):
            notes.append(str(item["customer_note"]))
    decline = _object(p.get("decline"))
    why = ", ".join(reasons) or " ".join(str(v) for v in (decline.get("reason"), decline.get("note")) if v)
    return {
        "name": p.get("name"),
        "reasons": reasons or None,
        "customer_notes": notes or None,
        "decline": _clean(decline) or None,
        "why": why or None,
    }


def _event_marker(ctx: DeliveryContext) -> str:
    """What is the same on every redelivery of one return event: Shopify's event id, else
    the time it was triggered, else the body itself."""
    delivery = ctx.delivery
    if delivery.event_id:
        return delivery.event_id
    if delivery.triggered_at:
        return delivery.triggered_at.astimezone(UTC).isoformat()
    return hashlib.sha256((delivery.payload or "").encode()).hexdigest()[:24]


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, "", [], {})}
