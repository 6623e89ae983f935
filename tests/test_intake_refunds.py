"""refunds/create → refund incidents, or the return's incident when the refund is a return's."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from plugin.db import utcnow
from plugin.models import Delivery
from plugin.models.delivery import DONE, IGNORED, PENDING
from plugin.models.incident import REFUND, RETURN
from tests.intake import (
    ORDER_ID,
    deliveries,
    drain,
    incidents,
    intake_events,
    keys,
    payload,
    post,
)

RETURN_ID = 9810345
REFUND_ID = 890123456789


def refund_of_return(**changes):
    return payload(
        "refund_create",
        **{"return": {"id": RETURN_ID, "admin_graphql_api_id": f"gid://shopify/Return/{RETURN_ID}"}},
        **changes,
    )


def wait_for(services, webhook_id: str, timeout: float = 15) -> Delivery:
    deadline = time.monotonic() + timeout
    while True:
        drain(services)
        with services.db.session() as session:
            delivery = session.scalar(sa.select(Delivery).where(Delivery.webhook_id == webhook_id))
        if delivery is not None and delivery.state != PENDING:
            return delivery
        assert time.monotonic() < deadline, f"delivery still {delivery.state if delivery else 'missing'}"
        time.sleep(0.05)


def test_a_refund_opens_a_refund_incident(client, services, intake):
    webhook_id = str(uuid.uuid4())
    post(client, "refunds/create", payload("refund_create"), webhook_id=webhook_id)
    drain(services)
    [incident] = incidents(services)
    assert (incident.kind, incident.order_id, incident.customer_email) == (
        REFUND,
        ORDER_ID,
        "jane@example.test",
    )
    refund = incident.details["refunds"][str(REFUND_ID)]
    assert (refund["amount"], refund["currency"], refund["note"], refund["items"]) == (
        "38.00",
        "USD",
        "Bag arrived torn",
        1,
    )
    [entry] = intake_events(services, incident.id)
    assert entry.summary == "Refund of 38.00 USD issued: Bag arrived torn"
    assert entry.webhook_id == webhook_id
    assert entry.at == datetime(2026, 10, 7, 14, 12, 45, tzinfo=UTC)


def test_the_same_refund_under_new_webhook_ids_is_applied_once(client, services, intake):
    for _ in range(3):
        post(client, "refunds/create", payload("refund_create"))
        drain(services)
    [incident] = incidents(services)
    assert len(intake_events(services, incident.id)) == 1
    assert keys(services).count(f"refund:{REFUND_ID}") == 1
    assert [d.state for d in deliveries(services)] == [DONE, IGNORED, IGNORED]


def test_a_second_refund_joins_the_open_refund_incident(client, services, intake):
    post(client, "refunds/create", payload("refund_create"))
    drain(services)
    post(client, "refunds/create", payload("refund_create", id=REFUND_ID + 1, note="Shipping refunded"))
    drain(services)
    [incident] = incidents(services)
    assert set(incident.details["refunds"]) == {str(REFUND_ID), str(REFUND_ID + 1)}
    assert len(intake.of("order")) == 1


def test_a_refund_of_a_return_goes_on_the_return_incident_and_resolves_it(client, services, intake):
    post(client, "returns/request", payload("return_request"))
    drain(services)
    post(client, "refunds/create", refund_of_return())
    drain(services)
    [incident] = incidents(services)
    assert incident.kind == RETURN
    assert not incident.is_open and incident.resolved_by == "webhook:refunds/create"
    assert str(REFUND_ID) in incident.details["refunds"]
    assert [e.event for e in intake_events(services, incident.id)] == ["detected", "resolved"]


def test_a_refund_arriving_before_its_return_waits_for_it(client, services, intake):
    refund_webhook = str(uuid.uuid4())
    post(client, "refunds/create", refund_of_return(), webhook_id=refund_webhook)
    drain(services)
    assert incidents(services) == []  # not a refund incident of its own
    post(client, "returns/request", payload("return_request"))
    delivery = wait_for(services, refund_webhook)
    assert delivery.state == DONE and delivery.attempts >= 2
    [incident] = incidents(services)
    assert incident.kind == RETURN and not incident.is_open


def test_a_refund_whose_return_never_comes_opens_its_own_incident_which_the_return_joins(
    client, services, intake
):
    refund_webhook = str(uuid.uuid4())
    post(client, "refunds/create", refund_of_return(), webhook_id=refund_webhook)
    drain(services)
    with services.db.session() as session:
        session.execute(sa.update(Delivery).values(received_at=utcnow() - timedelta(minutes=10)))
    assert wait_for(services, refund_webhook).state == DONE
    [incident] = incidents(services)
    assert incident.kind == REFUND
    assert f"return:{RETURN_ID}" in keys(services)
    post(client, "returns/request", payload("return_request"))
    drain(services)
    [incident] = incidents(services)  # still one: the late return joined it
    assert [e.event for e in intake_events(services, incident.id)] == ["detected", "return_requested"]
