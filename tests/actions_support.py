"""Fixtures and helpers for the action tests: Amends with real SMTP (aiosmtpd), real Redis
for the queue, and Shopify faked by `tests.shopify_fake.FakeAdmin`.

Jobs run when a test calls them (or with a burst worker); what they enqueue stays in Redis for
the test to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from email.message import EmailMessage
from typing import Any

import pytest
import responses
from flask import Flask
from sqlalchemy import select

from plugin import budget
from plugin.db import utcnow
from plugin.models import DiscountCode, Incident, Message, Shop, ShopSettings, Task, TimelineEntry
from plugin.models.incident import DETECTED
from plugin.services import Services
from tests import services as real
from tests.conftest import make_config
from tests.factories import make_shop
from tests.shopify_fake import FakeAdmin
from wsgi import create_app

_order_ids = iter(range(5_300_000_000_001, 5_400_000_000_000))


@pytest.fixture
def mail_app(database_url: str, redis_url: str, smtp_server: real.SmtpServer) -> Iterator[Flask]:
    app = create_app(make_config(database_url, redis_url=redis_url, smtp_url=smtp_server.url))
    services: Services = app.extensions["amends"]
    real.empty_tables(services.db.engine)
    budget._local.reset()
    yield app
    services.close()


@pytest.fixture
def mail_services(mail_app: Flask) -> Services:
    return mail_app.extensions["amends"]  # type: ignore[no-any-return]


@pytest.fixture
def admin(shopify: responses.RequestsMock) -> FakeAdmin:
    return FakeAdmin().install(shopify)


@pytest.fixture
def shop_id(mail_services: Services) -> int:
    return make_shop(mail_services).id


def make_incident(
    services: Services,
    shop_id: int,
    kind: str = "late_delivery",
    *,
    order_id: int | None = None,
    order_name: str = "#1001",
    customer_id: int | None = 7_000_000_001,
    first_name: str | None = "Jane",
    email: str | None = "jane@example.test",
    consent: bool | None = True,
    details: dict[str, Any] | None = None,
    missing: list[str] | None = None,
    opened_at: datetime | None = None,
    resolved: bool = False,
) -> int:
    """An incident as intake leaves it: its order's context filled in."""
    order_id = order_id or next(_order_ids)
    with services.db.session() as session:
        incident = Incident(
            shop_id=shop_id,
            kind=kind,
            state=DETECTED,
            open_key=None if resolved else f"{order_id}:{kind}",
            order_id=order_id,
            order_name=order_name,
            customer_id=customer_id,
            customer_first_name=first_name,
            customer_email=email,
            customer_locale="en",
            marketing_consent=consent,
            details=details if details is not None else {"status": "delayed"},
            missing=missing or [],
            opened_at=opened_at or utcnow(),
            resolved_at=utcnow() if resolved else None,
            resolved_by="webhook:refunds/create" if resolved else None,
        )
        session.add(incident)
        session.flush()
        session.add(
            TimelineEntry(incident_id=incident.id, event="detected", summary="Detected.", source="test")
        )
        return incident.id


def set_settings(services: Services, shop_id: int, values: dict[str, Any]) -> None:
    """Through the real save path (validated, templates checked)."""
    from plugin import settings

    with services.db.session() as session:
        settings.save(session, shop_id, values)


def store_settings_unchecked(services: Services, shop_id: int, values: dict[str, Any]) -> None:
    """Straight into the row, skipping validation (a template saved before a rule existed)."""
    from plugin import settings

    with services.db.session() as session:
        merged = settings._merge(settings.load(session, shop_id).as_json(), values)
        row = session.get(ShopSettings, shop_id)
        if row is None:
            session.add(ShopSettings(shop_id=shop_id, values=merged))
        else:
            row.values = merged


def update_shop(services: Services, shop_id: int, **fields: Any) -> None:
    with services.db.session() as session:
        shop = session.get(Shop, shop_id)
        assert shop is not None
        for name, value in fields.items():
            setattr(shop, name, value)


def update_incident(services: Services, incident_id: int, **fields: Any) -> None:
    with services.db.session() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        for name, value in fields.items():
            setattr(incident, name, value)


def incident(services: Services, incident_id: int) -> Incident:
    with services.db.session() as session:
        found = session.get(Incident, incident_id)
        assert found is not None
        return found


def events(services: Services, incident_id: int) -> list[str]:
    return [event for event, _ in timeline(services, incident_id)]


def timeline(services: Services, incident_id: int) -> list[tuple[str, str]]:
    with services.db.session() as session:
        return [
            (e.event, e.summary)
            for e in session.scalars(
                select(TimelineEntry)
                .where(TimelineEntry.incident_id == incident_id)
                .order_by(TimelineEntry.id)
            )
        ]


def summary_of(services: Services, incident_id: int, event: str) -> str:
    found = [summary for name, summary in timeline(services, incident_id) if name == event]
    assert found, f"no {event!r} on the timeline: {events(services, incident_id)}"
    return found[-1]


def messages(services: Services, incident_id: int) -> dict[str, Message]:
    with services.db.session() as session:
        return {m.kind: m for m in session.scalars(select(Message).where(Message.incident_id == incident_id))}


def code_row(services: Services, incident_id: int) -> DiscountCode | None:
    with services.db.session() as session:
        return session.scalar(select(DiscountCode).where(DiscountCode.incident_id == incident_id))


def task_of(services: Services, incident_id: int) -> Task | None:
    with services.db.session() as session:
        return session.scalar(select(Task).where(Task.incident_id == incident_id))


def queued(services: Services) -> list[tuple[str, tuple[Any, ...], str]]:
    """(function, args, job id) of every job waiting in the queue or scheduled for later."""
    from rq.job import Job
    from rq.registry import ScheduledJobRegistry

    queue = services.queue.rq  # type: ignore[attr-defined]
    ids = list(queue.job_ids) + list(ScheduledJobRegistry(queue=queue).get_job_ids())
    jobs = []
    for job_id in ids:
        job = Job.fetch(job_id, connection=queue.connection, serializer=queue.serializer)
        jobs.append((job.func_name, tuple(job.args), job_id))
    return jobs


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return body.get_content()  # type: ignore[attr-defined,no-any-return]


def html_of(message: EmailMessage) -> str:
    body = message.get_body(("html",))
    assert body is not None
    return body.get_content()  # type: ignore[attr-defined,no-any-return]
