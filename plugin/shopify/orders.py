"""An order's context for an incident: who to apologise to and what happened to the parcel.

One query per incident, for what the incident uses. Page sizes are small (the throttle admits
a call only when the bucket holds its requested cost, 12 points here; a page asked for and
not returned is refunded, so the actual cost is ~4 for an order with one shipment): a few
shipments and the first tracking link of each (the apology shows one). The checkout's
delivery promise is not asked for: no event-driven incident uses it (the late-delivery scan
reads it in its own query), and it cost 4 of an incident's points. Customer name and email
are protected customer data: without Shopify's approval they come back null (the whole
`customer` too, at level 1), and the context lists what is missing instead of failing.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from plugin.shopify.client import ShopifyClient

ORDER_CONTEXT = """
query OrderContext($id: ID!) {
  order(id: $id) {
    id
    name
    email
    customerLocale
    displayFulfillmentStatus
    customer {
      id
      firstName
      email
      locale
    }
    fulfillments(first: 5) {
      id
      status
      displayStatus
      estimatedDeliveryAt
      inTransitAt
      deliveredAt
      trackingInfo(first: 1) { company number url }
    }
  }
}
"""

# The same with the customer's email marketing consent: one point more (an object), asked for
# only by shops that respect it (`respect_marketing_consent`, off by default).
ORDER_CONTEXT_WITH_CONSENT = ORDER_CONTEXT.replace(
    "      locale\n    }", "      locale\n      emailMarketingConsent { marketingState }\n    }"
)
# Their requested costs: 2 (order, customer) or 3 (and consent) + 5 × 2 (fulfillment, tracking).
ORDER_CONTEXT_COST = 12
ORDER_CONTEXT_WITH_CONSENT_COST = 13

# The Incident columns this query fills; a null one is named in `missing`.
PROTECTED = ("customer", "first_name", "email")
CONSENTING_STATES = ("SUBSCRIBED",)


@dataclass
class Shipment:
    id: int
    status: str | None
    display_status: str | None
    estimated_delivery_at: str | None
    delivered_at: str | None
    tracking: list[dict[str, str | None]]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "display_status": self.display_status,
            "estimated_delivery_at": self.estimated_delivery_at,
            "delivered_at": self.delivered_at,
            "tracking": self.tracking,
        }


@dataclass
class OrderContext:
    order_id: int
    order_name: str | None = None
    customer_id: int | None = None
    first_name: str | None = None
    email: str | None = None
    locale: str | None = None
    marketing_consent: bool | None = None
    fulfillment_status: str | None = None
    shipments: list[Shipment] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def shipment(self, fulfillment_id: int) -> Shipment | None:
        return next((s for s in self.shipments if s.id == fulfillment_id), None)


def order_gid(order_id: int) -> str:
    return f"gid://shopify/Order/{order_id}"


def legacy_id(gid: str | None) -> int | None:
    """gid://shopify/Customer/123 → 123."""
    if not gid:
        return None
    tail = gid.rsplit("/", 1)[-1].split("?", 1)[0]
    return int(tail) if tail.isdigit() else None


def fetch_order_context(client: ShopifyClient, order_id: int, *, consent: bool) -> OrderContext | None:
    """None when Shopify has no such order (deleted, or another shop's id). `consent`: also
    read the customer's email marketing consent (else it stays unknown, None)."""
    document, cost = (
        (ORDER_CONTEXT_WITH_CONSENT, ORDER_CONTEXT_WITH_CONSENT_COST)
        if consent
        else (ORDER_CONTEXT, ORDER_CONTEXT_COST)
    )
    data = client.graphql(document, {"id": order_gid(order_id)}, cost=cost)
    order = data.get("order")
    if order is None:
        return None
    return parse_order(order_id, order)


def _text(value: Any, limit: int) -> str | None:
    """Customer-entered text as our columns can keep it: no control characters (PostgreSQL
    refuses NUL), at most `limit` characters."""
    if not isinstance(value, str):
        return None
    cleaned = "".join(c for c in value if unicodedata.category(c) != "Cc")
    return cleaned[:limit] or None


def _email(value: Any) -> str | None:
    """An address we can send to, or None: a clipped or cleaned address would be someone else's."""
    if not isinstance(value, str) or len(value) > 320 or any(unicodedata.category(c) == "Cc" for c in value):
        return None
    return value or None


def parse_order(order_id: int, order: dict[str, Any]) -> OrderContext:
    context = OrderContext(
        order_id=order_id,
        order_name=_text(order.get("name"), 100),
        locale=_text(order.get("customerLocale"), 20),
        fulfillment_status=order.get("displayFulfillmentStatus"),
    )
    customer = order.get("customer")
    if customer is None:
        context.missing.append("customer")
        context.email = _email(order.get("email"))
    else:
        context.customer_id = legacy_id(customer.get("id"))
        context.first_name = _text(customer.get("firstName"), 255)
        context.email = _email(customer.get("email")) or _email(order.get("email"))
        context.locale = context.locale or _text(customer.get("locale"), 20)
        consent = customer.get("emailMarketingConsent") or {}
        state = consent.get("marketingState")
        context.marketing_consent = None if state is None else state in CONSENTING_STATES
        if not context.first_name:
            context.missing.append("first_name")
    if not context.email:
        context.missing.append("email")

    for node in order.get("fulfillments") or []:
        fulfillment_id = legacy_id(node.get("id"))
        if fulfillment_id is None:
            continue
        context.shipments.append(
            Shipment(
                id=fulfillment_id,
                status=node.get("status"),
                display_status=node.get("displayStatus"),
                estimated_delivery_at=node.get("estimatedDeliveryAt"),
                delivered_at=node.get("deliveredAt"),
                tracking=[
                    {"company": t.get("company"), "number": t.get("number"), "url": t.get("url")}
                    for t in node.get("trackingInfo") or []
                ],
            )
        )
    return context


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
