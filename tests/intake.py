"""Helpers for the intake tests: Shopify-shaped payloads from tests/payloads, signed posts to
/webhooks, and reading back what the jobs made of them.

The app runs with its embedded queue (jobs in a background thread, as `amends dev` does);
`drain()` waits for every job due now to finish. Shopify's Admin API is the only fake
(`tests.shopify_fake.FakeAdmin`), and checks every document against the schema.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import responses
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from plugin.models import Delivery, Incident, IncidentKey, TimelineEntry
from plugin.services import Services
from tests.conftest import API_SECRET
from tests.factories import SHOP, make_shop, signed_webhook
from tests.shopify_fake import FakeAdmin, order_json

PAYLOADS = Path(__file__).parent / "payloads"
ORDER_ID = 5710211432673
FULFILLMENT_ID = 5160592474337


def payload(sample: str, /, **changes: Any) -> dict[str, Any]:
    """A sample payload from tests/payloads/<name>.json with top-level fields changed."""
    data = json.loads((PAYLOADS / f"{sample}.json").read_text())
    data.update(copy.deepcopy(changes))
    return data


def post(
    client: FlaskClient,
    topic: str,
    body: dict[str, Any] | bytes,
    *,
    shop: str = SHOP,
    secret: str = API_SECRET,
    webhook_id: str | None = None,
    event_id: str | None = None,
    triggered_at: datetime | str | None = None,
) -> TestResponse:
    raw, headers = signed_webhook(topic, body, secret, shop=shop, webhook_id=webhook_id or str(uuid.uuid4()))
    if event_id is not None:
        headers["X-Shopify-Event-Id"] = event_id
    if triggered_at is not None:
        headers["X-Shopify-Triggered-At"] = (
            triggered_at.isoformat() if isinstance(triggered_at, datetime) else triggered_at
        )
    return client.post("/webhooks", data=raw, headers=headers)


def drain(services: Services, timeout: float = 20) -> None:
    assert services.queue.wait_idle(timeout), "jobs still running"  # type: ignore[attr-defined]


def incidents(services: Services, kind: str | None = None) -> list[Incident]:
    with services.db.session() as session:
        query = select(Incident).order_by(Incident.id)
        if kind:
            query = query.where(Incident.kind == kind)
        return list(session.scalars(query))


def timeline(services: Services, incident_id: int) -> list[TimelineEntry]:
    with services.db.session() as session:
        return list(
            session.scalars(
                select(TimelineEntry)
                .where(TimelineEntry.incident_id == incident_id)
                .order_by(TimelineEntry.id)
            )
        )


def intake_events(services: Services, incident_id: int) -> list[TimelineEntry]:
    """The timeline entries that came from webhooks or the scan (not from later jobs)."""
    return [e for e in timeline(services, incident_id) if e.source.startswith(("webhook:", "scan"))]


def deliveries(services: Services) -> list[Delivery]:
    with services.db.session() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def keys(services: Services) -> list[str]:
    with services.db.session() as session:
        return list(session.scalars(select(IncidentKey.key).order_by(IncidentKey.id)))


def context_order(order_id: int = ORDER_ID, **fields: Any) -> dict[str, Any]:
    """The order-context answer for `order_id`, with a shipment that is not delivered."""
    shipments = fields.pop("fulfillments", None)
    order = order_json(order_id, name=fields.pop("name", "#1042"), **fields)
    order["fulfillments"] = (
        shipments
        if shipments is not None
        else [
            {
                "id": f"gid://shopify/Fulfillment/{FULFILLMENT_ID}",
                "status": "SUCCESS",
                "displayStatus": "DELAYED",
                "estimatedDeliveryAt": "2026-10-05T21:00:00Z",
                "inTransitAt": "2026-10-01T22:02:00Z",
                "deliveredAt": None,
                "trackingInfo": [
                    {
                        "company": "Canada Post",
                        "number": "7023210039414604",
                        "url": "https://www.canadapost-postescanada.ca/track-reperage/en#/search?searchFor=7023210039414604",
                    }
                ],
            }
        ]
    )
    return order


def start_intake(services: Services, shopify: responses.RequestsMock) -> Iterator[FakeAdmin]:
    """The `intake` fixture (tests/conftest.py): an installed shop in test mode (so no code is
    created in Shopify) and its faked Admin API, which knows the sample order."""
    make_shop(services, test_mode=True)
    admin = FakeAdmin().install(shopify)
    admin.orders[ORDER_ID] = context_order()
    yield admin
    drain(services)
