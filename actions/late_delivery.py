"""Late deliveries: from fulfillment events, fulfillment updates and the scan.

`delayed`, `failure` and `attempted_delivery` open a late-delivery incident for the order (or
join the open one); `delivered` resolves it once every late shipment of the order has
arrived. Event times decide, not arrival times: a delay that happened before a delivery we
already know of (from a webhook, or from Shopify's `deliveredAt`) opens nothing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from actions.deliveries import DeliveryContext
from actions.signals import ContextReader, as_int, parse_time, read_context
from actions.topics import DELIVERED
from plugin import incidents
from plugin.incidents import Signal
from plugin.models import Incident, Shop
from plugin.models.incident import LATE_DELIVERY
from plugin.services import Services

# Shopify's status → what happened, in the customer's terms (for the apology).
SUMMARIES = {
    "delayed": "your parcel is delayed",
    "failure": "the carrier could not deliver your parcel",
    "attempted_delivery": "the carrier tried to deliver your parcel but could not",
    "overdue": "your parcel is later than we promised",  # found by the scan
}


def shipment_key(fulfillment_id: int) -> str:
    return f"shipment:{fulfillment_id}"


def on_fulfillment_event(ctx: DeliveryContext) -> str | None:
    """fulfillment_events/create: {id, fulfillment_id, order_id, status, message, happened_at, …}"""
    p = ctx.payload
    event_id, order_id, fulfillment_id = (
        as_int(p.get("id")),
        as_int(p.get("order_id")),
        as_int(p.get("fulfillment_id")),
    )
    if event_id is None or order_id is None or fulfillment_id is None:
        return "the fulfillment event has no id, order_id or fulfillment_id"
    status = str(p.get("status"))
    at = parse_time(p.get("happened_at")) or parse_time(p.get("created_at")) or ctx.received_at
    info = _clean(
        {
            "message": p.get("message"),
            "estimated_delivery_at": p.get("estimated_delivery_at"),
            "city": p.get("city"),
            "province": p.get("province"),
            "country": p.get("country"),
        }
    )
    message = f": {info['message']}" if info.get("message") else ""
    signal = Signal(
        key=f"fulfillment_event:{event_id}",
        at=at,
        source=ctx.source,
        summary=f"Shipment {fulfillment_id} {status.replace('_', ' ')}{message}",
        webhook_id=ctx.webhook_id,
        data={"status": status, "fulfillment_id": fulfillment_id, **info},
    )
    return apply_shipment_status(
        ctx.session, ctx.services, ctx.shop, ctx, order_id, fulfillment_id, status, signal, info
    )


def on_fulfillment_update(ctx: DeliveryContext) -> str | None:
    """fulfillments/update: a Fulfillment with `shipment_status` and tracking fields."""
    p = ctx.payload
    order_id, fulfillment_id = as_int(p.get("order_id")), as_int(p.get("id"))
    if order_id is None or fulfillment_id is None:
        return "the fulfillment has no id or order_id"
    status = str(p.get("shipment_status"))
    updated_at = p.get("updated_at")
    at = parse_time(updated_at) or ctx.received_at
    info = _clean(
        {
            "tracking_company": p.get("tracking_company"),
            "tracking_numbers": p.get("tracking_numbers") or None,
            "tracking_urls": p.get("tracking_urls") or None,
        }
    )
    signal = Signal(
        # No event id here: the fulfillment, its new status and the time of the change.
        key=f"fulfillment:{fulfillment_id}:{status}:{updated_at or ctx.webhook_id}",
        at=at,
        source=ctx.source,
        summary=f"Shipment {fulfillment_id} is now {status.replace('_', ' ')}",
        webhook_id=ctx.webhook_id,
        data={"status": status, "fulfillment_id": fulfillment_id, **info},
    )
    return apply_shipment_status(
        ctx.session, ctx.services, ctx.shop, ctx, order_id, fulfillment_id, status, signal, info
    )


def apply_shipment_status(
    session: Session,
    services: Services,
    shop: Shop,
    reader: ContextReader,
    order_id: int,
    fulfillment_id: int,
    status: str,
    signal: Signal,
    info: dict[str, Any],
) -> str | None:
    """The one path for every shipment signal (webhooks and the scan). None when it changed
    an incident; otherwise why it did not."""
    if incidents.key_applied(session, shop.id, signal.key):
        return f"already applied ({signal.key})"
    if status == DELIVERED:
        return _delivered(session, services, shop, order_id, fulfillment_id, signal, info)
    return _late(session, services, shop, reader, order_id, fulfillment_id, status, signal, info)


def _late(
    session: Session,
    services: Services,
    shop: Shop,
    reader: ContextReader,
    order_id: int,
    fulfillment_id: int,
    status: str,
    signal: Signal,
    info: dict[str, Any],
) -> str | None:
    settled = incidents.settled_after(session, shop.id, shipment_key(fulfillment_id), signal.at)
    if settled is not None:
        reason = f"shipment {fulfillment_id} was delivered at {_when(settled.at)}, after this {status} event"
        past = session.get(Incident, settled.incident_id) if settled.incident_id else None
        if past is not None:
            incidents.apply_signal(
                session, past, replace(signal, event="stale_signal", summary=f"{signal.summary} ({reason})")
            )
        return reason

    context = error = None
    if incidents.find_open(session, shop.id, order_id, LATE_DELIVERY) is None:
        # A new incident: read the order first, outside the transaction.
        context, error = read_context(reader, shop.domain, order_id)
        shipment = context.shipment(fulfillment_id) if context else None
        delivered_at = parse_time(shipment.delivered_at) if shipment else None
        if delivered_at is not None and delivered_at >= signal.at:
            incidents.settle(session, shop.id, shipment_key(fulfillment_id), delivered_at)
            return (
                f"Shopify reports shipment {fulfillment_id} delivered at {_when(delivered_at)}, "
                "after this event"
            )

    current = incidents.find_open(session, shop.id, order_id, LATE_DELIVERY)
    newest = current is None or current.last_event_at is None or signal.at >= current.last_event_at
    details = {"status": status, "summary": SUMMARIES.get(status, status), **info} if newest else None
    outcome = incidents.open_or_join(
        session,
        services,
        shop,
        LATE_DELIVERY,
        order_id,
        signal,
        context=context,
        context_error=error,
        details=details,
    )
    if outcome.duplicate or outcome.incident is None:
        return f"already applied ({signal.key})"
    if details is not None and not outcome.created:
        outcome.incident.details = {**(outcome.incident.details or {}), **details}
    _record_shipment(outcome.incident, fulfillment_id, status, signal.at, info)
    return None


def _delivered(
    session: Session,
    services: Services,
    shop: Shop,
    order_id: int,
    fulfillment_id: int,
    signal: Signal,
    info: dict[str, Any],
) -> str | None:
    incident = incidents.find_open(session, shop.id, order_id, LATE_DELIVERY)
    # Remembered even with nothing open: a delay from before now, arriving late, is stale.
    incidents.settle(session, shop.id, shipment_key(fulfillment_id), signal.at, incident)
    if incident is None:
        return f"no open late-delivery incident for order {order_id}"
    shipments: dict[str, Any] = (incident.details or {}).get("shipments") or {}
    known = shipments.get(str(fulfillment_id))
    if known is None and shipments:
        incidents.apply_signal(
            session,
            incident,
            replace(signal, event="shipment_delivered", summary=f"{signal.summary} (not a late shipment)"),
        )
        return None
    if known is not None and (parse_time(known.get("at")) or signal.at) > signal.at:
        incidents.apply_signal(
            session,
            incident,
            replace(signal, event="stale_signal", summary=f"{signal.summary} (older than its last news)"),
        )
        return None
    _record_shipment(incident, fulfillment_id, DELIVERED, signal.at, info)
    still_late = [
        fid for fid, s in (incident.details.get("shipments") or {}).items() if s.get("status") != DELIVERED
    ]
    if still_late:
        incidents.apply_signal(
            session,
            incident,
            replace(
                signal,
                event="shipment_delivered",
                summary=f"{signal.summary}; still late: {', '.join(still_late)}",
            ),
        )
        return None
    incidents.note_key(session, incident, signal)
    incidents.resolve(
        session,
        services,
        incident,
        cause=signal.source,
        summary=f"{signal.summary}: the parcel has arrived",
        webhook_id=signal.webhook_id,
        at=signal.at,
    )
    return None


def _record_shipment(
    incident: Incident, fulfillment_id: int, status: str, at: datetime, info: dict[str, Any]
) -> None:
    """Keep each shipment's newest status on the incident (an older signal changes nothing)."""
    details = dict(incident.details or {})
    shipments = dict(details.get("shipments") or {})
    known = shipments.get(str(fulfillment_id))
    if known is not None and (parse_time(known.get("at")) or at) > at:
        return
    shipments[str(fulfillment_id)] = {**(known or {}), **info, "status": status, "at": at.isoformat()}
    details["shipments"] = shipments
    incident.details = details


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, "", [])}


def _when(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
