"""Open shipments, for the late-delivery scan: one page of orders at a time.

The query asks only for what the scan decides with: per order its id, and per fulfillment its
id, status, estimated and actual delivery times; the checkout's promise
(`maxDeliveryDateTime`) comes from the fulfillment orders. No customer data, no line items:
at 25 orders a page the requested cost stays around 500 points, well inside the smallest
bucket (1,000), and the actual cost Shopify reports is what the scan records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from plugin.shopify.client import ShopifyClient
from plugin.shopify.orders import legacy_id, parse_time

OPEN_SHIPMENTS = """
query OpenShipments($first: Int!, $after: String, $query: String!) {
  orders(first: $first, after: $after, query: $query, sortKey: CREATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id
      fulfillments(first: 5) {
        id
        status
        displayStatus
        estimatedDeliveryAt
        deliveredAt
      }
      fulfillmentOrders(first: 2) {
        nodes { deliveryMethod { maxDeliveryDateTime } }
      }
    }
  }
}
"""

PAGE_SIZE = 25
# Orders older than this are not scanned (Shopify shows apps 60 days without read_all_orders).
LOOKBACK = timedelta(days=60)
# A fulfillment in one of these is finished: nothing can be late any more.
FINISHED_DISPLAY = ("DELIVERED", "PICKED_UP", "CANCELED", "LABEL_VOIDED")
FINISHED_STATUS = ("CANCELLED", "ERROR", "FAILURE")


@dataclass(frozen=True)
class OpenShipment:
    order_id: int
    fulfillment_id: int
    display_status: str | None
    estimated_delivery_at: datetime | None
    promised_by: datetime | None

    @property
    def due(self) -> datetime | None:
        """When it should have arrived: the carrier's estimate, else the checkout's promise."""
        return self.estimated_delivery_at or self.promised_by


@dataclass
class Page:
    shipments: list[OpenShipment] = field(default_factory=list)
    cursor: str | None = None
    has_next: bool = False
    points: float = 0.0


def search_query(now: datetime) -> str:
    since = (now - LOOKBACK).date().isoformat()
    return (
        f"status:open AND (fulfillment_status:shipped OR fulfillment_status:partial) AND created_at:>={since}"
    )


def open_shipments(client: ShopifyClient, now: datetime, after: str | None = None) -> Page:
    """One page of shipments not yet delivered (or cancelled), from orders of the last 60 days."""
    before = client.points_used
    data = client.graphql(
        OPEN_SHIPMENTS,
        {"first": PAGE_SIZE, "after": after, "query": search_query(now)},
        cost=PAGE_SIZE * 20,
    )
    orders = data.get("orders") or {}
    info = orders.get("pageInfo") or {}
    page = Page(
        cursor=info.get("endCursor"),
        has_next=bool(info.get("hasNextPage")),
        points=client.points_used - before,
    )
    for order in orders.get("nodes") or []:
        page.shipments.extend(_open_shipments(order))
    return page


def _open_shipments(order: dict[str, Any]) -> list[OpenShipment]:
    order_id = legacy_id(order.get("id"))
    if order_id is None:
        return []
    promises = [
        parse_time(p)
        for p in (
            (fo.get("deliveryMethod") or {}).get("maxDeliveryDateTime")
            for fo in (order.get("fulfillmentOrders") or {}).get("nodes") or []
        )
        if p
    ]
    promised_by = max(promises) if promises else None
    found = []
    for node in order.get("fulfillments") or []:
        fulfillment_id = legacy_id(node.get("id"))
        if fulfillment_id is None or node.get("deliveredAt"):
            continue
        if node.get("displayStatus") in FINISHED_DISPLAY or node.get("status") in FINISHED_STATUS:
            continue
        estimated = node.get("estimatedDeliveryAt")
        found.append(
            OpenShipment(
                order_id=order_id,
                fulfillment_id=fulfillment_id,
                display_status=node.get("displayStatus"),
                estimated_delivery_at=parse_time(estimated) if estimated else None,
                promised_by=promised_by,
            )
        )
    return found
