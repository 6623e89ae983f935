"""The one table from Shopify topic to the function that handles it, and which payloads
need no work at all (the receiver answers those without recording them).

A handler is called by `actions.deliveries.process_delivery` inside its unit of work as
`handler(ctx)` with a `actions.deliveries.DeliveryContext`, and returns None when it did its
work or a short reason when the delivery changed nothing (recorded as "ignored").
"""

from __future__ import annotations

from typing import Any

from plugin import codes

HANDLERS: dict[str, str] = {
    "fulfillment_events/create": "actions.late_delivery.on_fulfillment_event",
    "fulfillments/update": "actions.late_delivery.on_fulfillment_update",
    "returns/request": "actions.returns.on_return_event",
    "returns/approve": "actions.returns.on_return_event",
    "returns/decline": "actions.returns.on_return_event",
    "returns/update": "actions.returns.on_return_event",
    "returns/cancel": "actions.returns.on_return_event",
    "returns/reopen": "actions.returns.on_return_event",
    "returns/close": "actions.returns.on_return_event",
    "refunds/create": "actions.refunds.on_refund",
    "orders/create": "actions.redemptions.on_order_created",
    "app/uninstalled": "actions.uninstall.on_app_uninstalled",
    "customers/data_request": "actions.compliance.on_data_request",
    "customers/redact": "actions.compliance.on_customer_redact",
    "shop/redact": "actions.compliance.on_shop_redact",
}

COMPLIANCE_TOPICS = ("customers/data_request", "customers/redact", "shop/redact")
# These still apply to a shop that has uninstalled Amends (shop/redact comes 48 h later).
FOR_UNINSTALLED_SHOPS = ("app/uninstalled", *COMPLIANCE_TOPICS)


def is_known(topic: str) -> bool:
    return topic in HANDLERS


# Shipment states that open a late-delivery incident, and the one that resolves it.
LATE_STATUSES = ("delayed", "failure", "attempted_delivery")
DELIVERED = "delivered"
RELEVANT_SHIPMENT_STATUSES = (*LATE_STATUSES, DELIVERED)


def skip_reason(topic: str, payload: dict[str, Any]) -> str | None:
    """None when the delivery needs work; otherwise why it does not.

    Pure and cheap (no I/O): the receiver calls it on every delivery, before any write.
    """
    if topic not in HANDLERS:
        return f"topic {topic} is not handled by Amends"
    if topic == "fulfillment_events/create":
        status = payload.get("status")
        if status not in RELEVANT_SHIPMENT_STATUSES:
            return f"fulfillment event status {status!r} needs no action"
    elif topic == "fulfillments/update":
        status = payload.get("shipment_status")
        if status not in RELEVANT_SHIPMENT_STATUSES:
            return f"shipment status {status!r} needs no action"
    elif topic == "orders/create":
        used = payload.get("discount_codes")
        if not isinstance(used, list) or not any(
            isinstance(dc, dict) and codes.looks_like_ours(codes.normalise(str(dc.get("code") or "")))
            for dc in used
        ):
            return "the order uses no Amends discount code"
    return None
