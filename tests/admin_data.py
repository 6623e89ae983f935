"""Incidents with their story (timeline, apology, code, task), written as the jobs leave them,
for the admin API and page tests."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import jwt
from sqlalchemy import select

from plugin import sending
from plugin.db import utcnow
from plugin.models import DiscountCode, Incident, Message, Shop, Task, TimelineEntry
from plugin.models.incident import APOLOGISED, DETECTED
from plugin.services import Services
from tests.conftest import API_KEY, API_SECRET


def session_token(
    shop: str, secret: str = API_SECRET, audience: str = API_KEY, expires_in: int = 60, **claims: Any
) -> str:
    """A session token as App Bridge gets it from Shopify for `shop`."""
    now = int(time.time())
    payload = {
        "iss": f"https://{shop}/admin",
        "dest": f"https://{shop}",
        "aud": audience,
        "sub": "42",
        "exp": now + expires_in,
        "nbf": now - 1,
        "iat": now - 1,
        "jti": str(uuid.uuid4()),
        "sid": "session-1",
        **claims,
    }
    return jwt.encode(payload, secret, algorithm="HS256")


def bearer(shop: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {session_token(shop)}"}


@dataclass(frozen=True)
class Seeded:
    incident_id: int
    task_id: int | None
    shop_id: int


_order_ids = iter(range(5_100_000_000_001, 5_200_000_000_000))


def seed_incident(
    services: Services,
    shop_domain: str,
    *,
    kind: str = "late_delivery",
    order_name: str = "#1001",
    first_name: str | None = "Ada",
    email: str | None = "ada@example.test",
    opened_at: datetime | None = None,
    apologised: bool = True,
    task: bool = True,
    due_in: timedelta | None = timedelta(hours=24),
    needs_attention: str | None = None,
    code: str | None = None,
    html_body: str | None = None,
    details: dict[str, Any] | None = None,
) -> Seeded:
    opened = opened_at or utcnow()
    with services.db.session() as session:
        shop = session.scalar(select(Shop).where(Shop.domain == shop_domain))
        assert shop is not None, f"make the shop {shop_domain} first"
        order_id = next(_order_ids)
        incident = Incident(
            shop_id=shop.id,
            kind=kind,
            state=APOLOGISED if apologised else DETECTED,
            open_key=f"{order_id}:{kind}",
            order_id=order_id,
            order_name=order_name,
            customer_id=7_000_000_001,
            customer_first_name=first_name,
            customer_email=email,
            details=details or {"what": "your parcel is delayed", "tracking_number": "1Z999"},
            missing=[] if email else ["email"],
            needs_attention=needs_attention,
            opened_at=opened,
            created_at=opened,
        )
        session.add(incident)
        session.flush()
        session.add(
            TimelineEntry(
                incident_id=incident.id,
                at=opened,
                event="detected",
                summary="Carrier reported a delay",
                source="webhook:fulfillment_events/create",
            )
        )
        if apologised:
            the_code = code or f"SORRY-{incident.id:04d}"
            session.add(
                DiscountCode(
                    shop_id=shop.id,
                    incident_id=incident.id,
                    code=the_code,
                    compensation="percentage",
                    value=Decimal("10"),
                    currency="USD",
                    ends_at=opened + timedelta(days=30),
                    state="test" if shop.test_mode else "created",
                    test=shop.test_mode,
                    created_at=opened,
                )
            )
            session.add(
                Message(
                    shop_id=shop.id,
                    incident_id=incident.id,
                    kind="apology",
                    # The id the apology job gives it, so the "fixed" job finds it.
                    message_id=sending.message_id_for(services.config, "apology", incident.id),
                    state="sent",
                    to_address=email,
                    subject=f"About your order {order_name}",
                    text_body=f"Hi {first_name}, sorry. Your code: {the_code}",
                    html_body=html_body or f"<p>Hi {first_name}, sorry. Your code: <b>{the_code}</b></p>",
                    attempts=1,
                    sent_at=opened,
                )
            )
            session.add(
                TimelineEntry(
                    incident_id=incident.id,
                    at=opened,
                    event="email_sent",
                    summary="Apology accepted by the mail server",
                    source="job:send_apology",
                )
            )
        task_id = None
        if task:
            row = Task(
                shop_id=shop.id,
                incident_id=incident.id,
                title=f"Follow up: {order_name} late delivery",
                due_at=opened + due_in if due_in is not None else None,
            )
            session.add(row)
            session.flush()
            task_id = row.id
        return Seeded(incident_id=incident.id, task_id=task_id, shop_id=shop.id)


class ApiClient:
    """The admin API as a page calls it, with a session token for `shop`; every answer is
    checked against the OpenAPI document."""

    def __init__(self, client: Any, shop: str | None, openapi: Any = None):
        self.client = client
        self.shop = shop
        self.openapi = openapi
        self.seen: set[tuple[str, str, int]] = set()

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        sent = dict(bearer(self.shop) if self.shop else {})
        sent.update(headers or {})
        response = self.client.open(path, method=method, headers=sent, **kwargs)
        if self.openapi is not None and path.startswith("/api/"):
            body = response.get_json(silent=True) if response.is_json else response.get_data(as_text=True)
            documented = self.openapi.check(
                method, path.split("?")[0], response.status_code, response.content_type, body
            )
            self.seen.add((method.upper(), documented, response.status_code))
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)
