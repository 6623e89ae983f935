"""Refunds: `refunds/create` opens a refund incident, unless the refund belongs to a return
(`return` is set): then it goes on that return's incident, and resolves it.

When the return's incident is not recorded yet (its webhook is late), the delivery is retried
for a few minutes; after that the refund opens its own incident, which also takes the return's
key so the late return joins it instead of opening a second one.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from actions.deliveries import DeliveryContext
from actions.returns import return_key
from actions.signals import as_int, parse_time, read_context
from plugin import incidents
from plugin.db import utcnow
from plugin.errors import RetryableError
from plugin.incidents import Signal
from plugin.models.incident import REFUND

# How long a refund of a return waits for that return's incident before opening its own.
RETURN_WAIT = timedelta(minutes=5)


class ReturnNotRecordedError(RetryableError):
    """A refund of a return arrived before the return did: try again shortly."""


def on_refund(ctx: DeliveryContext) -> str | None:
    p = ctx.payload
    refund_id, order_id = as_int(p.get("id")), as_int(p.get("order_id"))
    if refund_id is None or order_id is None:
        return "the refund has no id or order_id"
    at = parse_time(p.get("created_at")) or parse_time(p.get("processed_at")) or ctx.received_at
    amount, currency = _refunded(p)
    info = {
        "refund_id": refund_id,
        "amount": str(amount) if amount is not None else None,
        "currency": currency,
        "note": p.get("note") or None,
        "items": sum(
            int(i.get("quantity") or 0) for i in p.get("refund_line_items") or [] if isinstance(i, dict)
        ),
    }
    money = f" of {amount} {currency}" if amount is not None and currency else ""
    signal = Signal(
        key=f"refund:{refund_id}",
        at=at,
        source=ctx.source,
        summary=f"Refund{money} issued" + (f": {info['note']}" if info["note"] else ""),
        webhook_id=ctx.webhook_id,
        data={k: v for k, v in info.items() if v is not None},
    )
    session, shop = ctx.session, ctx.shop
    if incidents.key_applied(session, shop.id, signal.key):
        return f"already applied ({signal.key})"

    the_return = p.get("return") if isinstance(p.get("return"), dict) else None
    return_id = as_int(the_return.get("id")) if the_return else None
    also: tuple[str, ...] = ()
    if return_id is not None:
        incident = incidents.incident_for_key(session, shop.id, return_key(return_id))
        if incident is not None:
            refunds = dict((incident.details or {}).get("refunds") or {})
            refunds[str(refund_id)] = signal.data
            incident.details = {**(incident.details or {}), "refunds": refunds}
            if incident.is_open:
                incidents.note_key(session, incident, signal)
                incidents.resolve(
                    session,
                    ctx.services,
                    incident,
                    cause=ctx.source,
                    summary=f"{signal.summary} for return #{return_id}",
                    webhook_id=ctx.webhook_id,
                    at=at,
                )
            else:
                incidents.apply_signal(session, incident, replace(signal, event="refund"))
            return None
        if utcnow() - ctx.delivery.received_at < RETURN_WAIT:
            raise ReturnNotRecordedError(
                f"refund {refund_id} belongs to return {return_id}, not recorded yet", retry_after=30
            )
        also = (return_key(return_id),)

    context = error = None
    if incidents.find_open(session, shop.id, order_id, REFUND) is None:
        context, error = read_context(ctx, shop.domain, order_id)
    outcome = incidents.open_or_join(
        session,
        ctx.services,
        shop,
        REFUND,
        order_id,
        signal,
        context=context,
        context_error=error,
        details={"summary": "we refunded part of your order", "refunds": {str(refund_id): signal.data}},
        also_keys=also,
    )
    if outcome.duplicate:
        return f"already applied ({signal.key})"
    if outcome.incident is not None and not outcome.created:
        refunds = dict((outcome.incident.details or {}).get("refunds") or {})
        refunds[str(refund_id)] = signal.data
        outcome.incident.details = {**(outcome.incident.details or {}), "refunds": refunds}
    return None


def _refunded(p: dict[str, Any]) -> tuple[Decimal | None, str | None]:
    """The money that went back: the successful refund transactions."""
    total: Decimal | None = None
    currency = None
    for tx in p.get("transactions") or []:
        if (
            not isinstance(tx, dict)
            or tx.get("kind") != "refund"
            or tx.get("status") not in ("success", None)
        ):
            continue
        try:
            value = Decimal(str(tx.get("amount")))
        except InvalidOperation:
            continue
        total = value if total is None else total + value
        currency = currency or tx.get("currency")
    return total, currency
