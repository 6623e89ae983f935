"""Shopify-shaped sample deliveries, for `amends trigger`, the demo and the tests.

Field names follow Shopify's REST webhook payloads for each topic.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _order_id() -> int:
    return random.randint(5_000_000_000_000, 5_999_999_999_999)


def fulfillment_event(
    status: str,
    order_id: int | None = None,
    fulfillment_id: int | None = None,
    happened_at: str | None = None,
    event_id: int | None = None,
) -> dict[str, Any]:
    order_id = order_id or _order_id()
    return {
        "id": event_id or _order_id() + 1,
        # The order's one shipment: `trigger delivered --order N` follows up `late-delivery --order N`.
        "fulfillment_id": fulfillment_id or 4_100_000_000_000 + order_id % 1_000_000,
        "order_id": order_id,
        "shop_id": 60_000_000_000,
        "status": status,
        "message": {
            "delayed": "Weather delay at the regional hub",
            "failure": "Package damaged in transit",
            "attempted_delivery": "Nobody home to sign",
            "delivered": "Delivered to front door",
        }.get(status, status.replace("_", " ")),
        "happened_at": happened_at or _now(),
        "estimated_delivery_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(timespec="seconds"),
        "city": "Ottawa",
        "province": "Ontario",
        "country": "Canada",
        "zip": "K2P 1L4",
        "address1": None,
        "latitude": 45.41,
        "longitude": -75.69,
        "created_at": _now(),
        "updated_at": _now(),
        "admin_graphql_api_id": "gid://shopify/FulfillmentEvent/1",
    }


def return_request(order_id: int | None = None, return_id: int | None = None) -> dict[str, Any]:
    return_id = return_id or random.randint(9_000_000, 9_999_999)
    return {
        "id": return_id,
        "admin_graphql_api_id": f"gid://shopify/Return/{return_id}",
        "status": "requested",
        "name": "#1001-R1",
        "order": {"id": order_id or _order_id(), "admin_graphql_api_id": "gid://shopify/Order/1"},
        "total_return_line_items": 1,
        "return_line_items": [
            {
                "id": random.randint(1, 10_000_000),
                "admin_graphql_api_id": "gid://shopify/ReturnLineItem/1",
                "quantity": 1,
                "return_reason": "SIZE_TOO_SMALL",
                "return_reason_note": "",
                "customer_note": "The shoes are a size too small.",
            }
        ],
        "return_shipping_fees": [],
        "exchange_line_items": [],
    }


def return_status(status: str, return_id: int, order_id: int) -> dict[str, Any]:
    """returns/close, /cancel, /reopen carry only this much."""
    return {
        "id": return_id,
        "admin_graphql_api_id": f"gid://shopify/Return/{return_id}",
        "order_id": order_id,
        "status": status,
    }


def refund(
    order_id: int | None = None, refund_id: int | None = None, return_id: int | None = None
) -> dict[str, Any]:
    refund_id = refund_id or random.randint(800_000_000, 899_999_999)
    order_id = order_id or _order_id()
    return {
        "id": refund_id,
        "order_id": order_id,
        "created_at": _now(),
        "processed_at": _now(),
        "note": "Item arrived damaged",
        "restock": False,
        "user_id": None,
        "admin_graphql_api_id": f"gid://shopify/Refund/{refund_id}",
        "refund_line_items": [
            {
                "id": random.randint(1, 10_000_000),
                "quantity": 1,
                "line_item_id": 1,
                "restock_type": "no_restock",
                "subtotal": "24.00",
                "total_tax": "0.00",
                "subtotal_set": {"shop_money": {"amount": "24.00", "currency_code": "USD"}},
            }
        ],
        "transactions": [
            {
                "id": 1,
                "amount": "24.00",
                "currency": "USD",
                "kind": "refund",
                "status": "success",
                "gateway": "bogus",
            }
        ],
        "order_adjustments": [],
        "return": (
            {"id": return_id, "admin_graphql_api_id": f"gid://shopify/Return/{return_id}"}
            if return_id
            else None
        ),
    }


def order_created(
    discount_codes: list[dict[str, str]], order_id: int | None = None, total: str = "86.00"
) -> dict[str, Any]:
    order_id = order_id or _order_id()
    return {
        "id": order_id,
        "name": f"#{random.randint(1000, 9999)}",
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "created_at": _now(),
        "currency": "USD",
        "total_price": total,
        "current_total_price": total,
        "financial_status": "paid",
        "discount_codes": discount_codes,
        "customer": {"id": 7_000_000_001},
    }


# `amends trigger NAME` → (topic, payload factory)
TRIGGERS = {
    "late-delivery": ("fulfillment_events/create", lambda o: fulfillment_event("delayed", o)),
    "delivered": ("fulfillment_events/create", lambda o: fulfillment_event("delivered", o)),
    "return": ("returns/request", lambda o: return_request(o)),
    "refund": ("refunds/create", lambda o: refund(o)),
}
