"""Redemptions: an `orders/create` that uses an apology code is recorded on that code's
incident (order, amount, currency, time). This is how Amends measures what it wins back."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select

from actions.deliveries import DeliveryContext
from actions.signals import as_int, parse_time
from plugin import codes, incidents
from plugin.incidents import Signal
from plugin.models import DiscountCode, Incident


def on_order_created(ctx: DeliveryContext) -> str | None:
    p = ctx.payload
    order_id = as_int(p.get("id"))
    if order_id is None:
        return "the order has no id"
    used = [dc for dc in p.get("discount_codes") or [] if isinstance(dc, dict) and dc.get("code")]
    candidates = {codes.normalise(str(dc["code"])) for dc in used} | {str(dc["code"]) for dc in used}
    session, shop = ctx.session, ctx.shop
    rows = session.scalars(
        select(DiscountCode).where(DiscountCode.shop_id == shop.id, DiscountCode.code.in_(candidates))
    ).all()
    if not rows:
        return "no Amends code was used"

    at = parse_time(p.get("created_at")) or ctx.received_at
    total = _decimal(p.get("current_total_price") or p.get("total_price"))
    currency = p.get("currency") or p.get("presentment_currency")
    name = p.get("name") or f"#{order_id}"
    recorded = 0
    for row in rows:
        incident = session.get(Incident, row.incident_id)
        if incident is None:
            continue
        used_entry = next((dc for dc in used if codes.normalise(str(dc["code"])) == row.code), {})
        signal = Signal(
            key=f"redemption:{order_id}:{row.code}",
            at=at,
            source=ctx.source,
            event="code_redeemed",
            summary=f"Code {row.code} used on order {name}" + (f" ({total} {currency})" if total else ""),
            webhook_id=ctx.webhook_id,
            data={
                "order_id": order_id,
                "order_name": name,
                "order_total": str(total) if total is not None else None,
                "currency": currency,
                "discount_amount": used_entry.get("amount"),
            },
        )
        if incidents.key_applied(session, shop.id, signal.key):
            continue
        if row.redeemed_at is None:
            row.redeemed_at = at
            row.redeemed_order_id = order_id
            row.redeemed_order_name = str(name)[:100]
            row.redeemed_amount = total
            row.redeemed_currency = (currency or "")[:3] or None
        incidents.apply_signal(session, incident, signal)
        recorded += 1
    return None if recorded else "the redemption was already recorded"


def _decimal(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None
