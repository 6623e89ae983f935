# ruff: noqa: F401, F811 - pytest fixtures imported from tests.actions_support
"""End to end, for each kind of incident: a signed webhook in, a real RQ worker on real Redis,
the apology with its code in a real SMTP server, exactly one discount mutation at Shopify
(document and variables checked against Shopify's schema), the task, then the resolving
signal and the "fixed" email. Posting everything again sends nothing more.

Only Shopify's HTTP is faked (`tests.shopify_fake.FakeAdmin`).
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from plugin import codes
from plugin.models import Incident, Task
from plugin.models.incident import CUSTOMER_TOLD
from plugin.services import Services
from plugin.worker import run_worker
from tests.actions_support import admin, html_of, mail_app, mail_services, set_settings, text_of
from tests.admin_data import bearer
from tests.factories import SHOP, make_shop
from tests.graphql_schema import document_errors
from tests.intake import ORDER_ID, context_order, payload, post
from tests.shopify_fake import FakeAdmin

pytestmark = pytest.mark.redis

SECRET = "test-secret-key-0123456789abcdef0123456789"

# kind → (opening webhook, resolving webhook or None when staff close the task, mutation, value)
FLOWS: dict[str, dict[str, Any]] = {
    "late_delivery": {
        "open": ("fulfillment_events/create", "fulfillment_event_delayed"),
        "resolve": ("fulfillment_events/create", "fulfillment_event_delivered"),
        "mutation": "discountCodeBasicCreate",
        "gets": {"value": {"percentage": 0.1}, "items": {"all": True}},
        "says": "10% off your next order",
        "fixed_subject": "has arrived",
    },
    "return": {
        "open": ("returns/request", "return_request"),
        "resolve": ("returns/close", "return_close"),
        "mutation": "discountCodeFreeShippingCreate",
        "gets": None,
        "says": "free shipping on your next order",
        "fixed_subject": "return",
    },
    "refund": {
        "open": ("refunds/create", "refund_create"),
        "resolve": None,  # refunds resolve when staff close the task
        "mutation": "discountCodeBasicCreate",
        "gets": {
            "value": {"discountAmount": {"amount": "5.00", "appliesOnEachItem": False}},
            "items": {"all": True},
        },
        "says": "$5.00 off your next order",
        "fixed_subject": "All sorted",
    },
}


@pytest.fixture
def shop(mail_services: Services, admin: FakeAdmin) -> int:
    admin.orders[ORDER_ID] = context_order()
    return make_shop(mail_services).id  # live: test mode off


def work(services: Services) -> None:
    run_worker(services, burst=True)


def only_incident(services: Services) -> Incident:
    with services.db.session() as session:
        [found] = session.scalars(select(Incident)).all()
        return found


@pytest.mark.parametrize("kind", list(FLOWS))
def test_a_webhook_becomes_one_apology_one_code_a_task_and_a_fixed_email(
    kind, mail_app, mail_services, admin, shop, smtp_server
):
    flow = FLOWS[kind]
    client = mail_app.test_client()
    topic, sample = flow["open"]
    opening_id = str(uuid.uuid4())
    response = post(client, topic, payload(sample), webhook_id=opening_id)
    assert response.status_code == 200

    work(mail_services)

    incident = only_incident(mail_services)
    assert incident.kind == kind
    code = codes.derive(SECRET, incident.id)
    # Shopify received exactly one discount mutation, with the right variables.
    [mutation] = admin.discount_mutations
    assert mutation.operation == flow["mutation"]
    assert document_errors(mutation.document, mutation.variables) == []
    discount = mutation.variables["discount"]
    assert discount["code"] == code
    assert discount["usageLimit"] == 1 and discount["appliesOncePerCustomer"] is True
    assert discount["context"] == {"customers": {"add": ["gid://shopify/Customer/7000000001"]}}
    assert "#1042" in discount["title"]
    starts, ends = (
        datetime.fromisoformat(discount[k].replace("Z", "+00:00")) for k in ("startsAt", "endsAt")
    )
    assert ends - starts == timedelta(days=30)
    if flow["gets"] is None:
        assert discount["destination"] == {"all": True} and "customerGets" not in discount
    else:
        assert discount["customerGets"] == flow["gets"]

    # The customer's apology, with the code.
    [apology] = smtp_server.wait_for(1)
    assert apology["To"] == "jane@example.test"
    assert apology["From"] == "Calm Coffee <amends@example.test>"
    assert apology["Reply-To"] == "hello@calm-coffee.example"
    assert apology["Message-ID"] == f"<apology-{incident.id}@amends.example.test>"
    assert code in text_of(apology) and code in html_of(apology)
    assert flow["says"] in text_of(apology) and "Hi Jane," in text_of(apology)

    # The team's task.
    with mail_services.db.session() as session:
        task = session.scalar(select(Task).where(Task.incident_id == incident.id))
    assert task is not None and task.status == "open" and "#1042" in task.title
    assert admin.tags[ORDER_ID] == {"amends"}

    # The resolving signal, then the "fixed" email.
    if flow["resolve"] is not None:
        topic, sample = flow["resolve"]
        resolving_id = str(uuid.uuid4())
        assert post(client, topic, payload(sample), webhook_id=resolving_id).status_code == 200
    else:
        answer = client.post(f"/api/tasks/{task.id}/resolve", headers=bearer(SHOP))
        assert answer.status_code == 200, answer.get_json()
    work(mail_services)
    _, fixed = smtp_server.wait_for(2)
    assert fixed["Message-ID"] == f"<fixed-{incident.id}@amends.example.test>"
    assert fixed["In-Reply-To"] == apology["Message-ID"]
    assert flow["fixed_subject"].lower() in fixed["Subject"].lower()
    assert code in text_of(fixed)  # the unused code, remembered
    assert only_incident(mail_services).state == CUSTOMER_TOLD

    # Everything again: the same webhook ids, and the same events under new webhook ids.
    for topic, sample in filter(None, (flow["open"], flow["resolve"])):
        post(client, topic, payload(sample), webhook_id=opening_id)
        post(client, topic, payload(sample))
    work(mail_services)
    assert len(smtp_server.wait_for(3, timeout=1.0)) == 2
    assert len(admin.discount_mutations) == 1
    with mail_services.db.session() as session:
        assert len(session.scalars(select(Incident)).all()) == 1

    events = [e.event for e in only_incident_timeline(mail_services, incident.id)]
    for step in ("detected", "task_opened", "code_created", "apology_sent", "resolved", "fixed_sent"):
        assert step in events, f"{step} missing from {events}"


def test_smtp_451_and_a_throttled_api_end_in_one_email_through_the_worker(
    mail_app, mail_services, admin, shop, smtp_server
):
    client = mail_app.test_client()
    smtp_server.fail_next("451 4.7.1 Greylisted, try again")
    admin.fail_next("discountCodeBasicCreate", admin.throttled(available=5, restore_rate=100))
    post(client, "fulfillment_events/create", payload("fulfillment_event_delayed"))
    # The 451 sends the job to its retry (0.05 s here): a slow first pass may already have run
    # it, so the timeline below, not the clock, says the first attempt was refused.
    work(mail_services)
    deadline = time.monotonic() + 30
    while not smtp_server.messages and time.monotonic() < deadline:
        time.sleep(0.3)
        work(mail_services)
    [apology] = smtp_server.wait_for(1)
    incident = only_incident(mail_services)
    assert codes.derive(SECRET, incident.id) in text_of(apology)
    assert len(admin.discounts) == 1
    events = [e.event for e in only_incident_timeline(mail_services, incident.id)]
    assert events.count("email_deferred") == 1 and events.count("apology_sent") == 1


def test_a_delivered_event_before_the_apology_is_due_means_no_apology(
    mail_app, mail_services, admin, shop, smtp_server
):
    set_settings(mail_services, shop, {"late_delivery": {"delay_minutes": 60}})
    client = mail_app.test_client()
    post(client, "fulfillment_events/create", payload("fulfillment_event_delayed"))
    work(mail_services)
    post(client, "fulfillment_events/create", payload("fulfillment_event_delivered"))
    work(mail_services)
    incident = only_incident(mail_services)
    assert incident.resolved_at is not None
    # The scheduled apology runs an hour later and finds the parcel delivered.
    from actions.apology import send_apology

    with mail_services.db.session() as session:
        session.get(Incident, incident.id).opened_at -= timedelta(minutes=61)
    send_apology(incident.id)
    work(mail_services)
    assert smtp_server.wait_for(1, timeout=0.5) == []
    assert admin.discount_mutations == []
    events = [e.event for e in only_incident_timeline(mail_services, incident.id)]
    assert "apology_scheduled" in events and "apology_skipped" in events and "fixed_skipped" in events


def only_incident_timeline(services: Services, incident_id: int) -> list[Any]:
    from plugin.models import TimelineEntry

    with services.db.session() as session:
        return list(
            session.scalars(
                select(TimelineEntry)
                .where(TimelineEntry.incident_id == incident_id)
                .order_by(TimelineEntry.id)
            )
        )
