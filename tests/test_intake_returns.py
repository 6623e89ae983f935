"""returns/* → return incidents: request opens, approve/decline/update/cancel/reopen update the
state and the timeline, close resolves; duplicates and out-of-order deliveries.

The return payloads carry no time: X-Shopify-Triggered-At orders them, and X-Shopify-Event-Id
(the same on every delivery of one event) is their business key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from plugin.models.delivery import IGNORED
from plugin.models.incident import RETURN
from tests.intake import (
    ORDER_ID,
    deliveries,
    drain,
    incidents,
    intake_events,
    payload,
    post,
)

RETURN_ID = 9810345
T0 = datetime(2026, 10, 8, 12, 0, tzinfo=UTC)


def send(client, services, topic: str, minutes: int, event_id: str | None = None, **changes):
    sample = "return_" + topic.split("/")[1]
    response = post(
        client,
        topic,
        payload(sample, **changes),
        event_id=event_id or str(uuid.uuid4()),
        triggered_at=T0 + timedelta(minutes=minutes),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    drain(services)
    return response


def the_incident(services):
    [incident] = incidents(services)
    return incident


def test_a_return_request_opens_a_return_incident(client, services, intake):
    send(client, services, "returns/request", 0)
    incident = the_incident(services)
    assert (incident.kind, incident.order_id, incident.customer_first_name) == (RETURN, ORDER_ID, "Jane")
    record = incident.details["returns"][str(RETURN_ID)]
    assert record["status"] == "requested"
    assert record["reasons"] == ["defective"]
    assert record["customer_notes"] == ["The bag arrived torn and half the beans spilled."]
    [entry] = intake_events(services, incident.id)
    assert entry.event == "detected"
    assert entry.summary == "Return #1042-R1 requested: defective"
    assert entry.at == T0


@pytest.mark.parametrize(
    ("topic", "status", "event"),
    [
        ("returns/approve", "open", "return_open"),
        ("returns/decline", "declined", "return_declined"),
        ("returns/update", "open", "return_open"),
        ("returns/cancel", "canceled", "return_canceled"),
    ],
)
def test_later_return_events_update_state_and_timeline(client, services, intake, topic, status, event):
    send(client, services, "returns/request", 0)
    send(client, services, topic, 5)
    incident = the_incident(services)
    assert incident.is_open
    assert incident.details["returns"][str(RETURN_ID)]["status"] == status
    assert [e.event for e in intake_events(services, incident.id)] == ["detected", event]
    if topic == "returns/decline":
        assert incident.details["returns"][str(RETURN_ID)]["decline"]["reason"] == "RETURN_PERIOD_ENDED"


def test_close_resolves_and_reopen_is_recorded(client, services, intake):
    send(client, services, "returns/request", 0)
    send(client, services, "returns/approve", 5)
    webhook_id = str(uuid.uuid4())
    response = post(
        client,
        "returns/close",
        payload("return_close"),
        webhook_id=webhook_id,
        event_id="close-1",
        triggered_at=T0 + timedelta(minutes=60),
    )
    assert response.status_code == 200
    drain(services)
    incident = the_incident(services)
    assert incident.resolved_at == T0 + timedelta(minutes=60)
    assert incident.resolved_by == "webhook:returns/close"
    send(client, services, "returns/reopen", 90)
    incident = the_incident(services)
    assert incident.details["returns"][str(RETURN_ID)]["status"] == "open"
    assert "reopened" in (incident.needs_attention or "")
    assert [e.event for e in intake_events(services, incident.id)] == [
        "detected",
        "return_open",
        "resolved",
        "return_open",
    ]


def test_the_same_event_under_new_webhook_ids_is_applied_once(client, services, intake):
    for _ in range(3):
        send(client, services, "returns/request", 0, event_id="evt-request")
    for _ in range(2):
        send(client, services, "returns/approve", 5, event_id="evt-approve")
    incident = the_incident(services)
    assert [e.event for e in intake_events(services, incident.id)] == ["detected", "return_open"]
    assert [d.state for d in deliveries(services)].count(IGNORED) == 3


def test_an_approval_older_than_the_close_changes_no_state(client, services, intake):
    send(client, services, "returns/request", 0)
    send(client, services, "returns/close", 60)
    send(client, services, "returns/approve", 5)  # happened before the close, arrived after
    incident = the_incident(services)
    assert not incident.is_open
    assert incident.details["returns"][str(RETURN_ID)]["status"] == "closed"
    assert intake_events(services, incident.id)[-1].event == "stale_signal"


def test_a_close_that_arrives_before_the_request_keeps_it_from_opening(client, services, intake):
    send(client, services, "returns/close", 60)
    send(client, services, "returns/request", 0)
    assert incidents(services) == []
    assert "already finished" in (deliveries(services)[-1].reason or "")


def test_an_approval_without_the_request_opens_the_incident(client, services, intake):
    send(client, services, "returns/approve", 5)  # the request never came
    incident = the_incident(services)
    assert incident.details["returns"][str(RETURN_ID)]["status"] == "open"
    send(client, services, "returns/request", 0)  # ...then it does, late
    incident = the_incident(services)
    assert incident.details["returns"][str(RETURN_ID)]["status"] == "open"


def test_two_returns_of_one_order_share_its_incident_until_both_close(client, services, intake):
    send(client, services, "returns/request", 0)
    send(client, services, "returns/request", 1, id=RETURN_ID + 1, name="#1042-R2")
    send(client, services, "returns/close", 30)
    assert the_incident(services).is_open
    send(client, services, "returns/close", 40, id=RETURN_ID + 1)
    assert not the_incident(services).is_open


def test_events_for_a_return_never_seen_are_ignored(client, services, intake):
    send(client, services, "returns/update", 5)
    send(client, services, "returns/reopen", 6)
    assert incidents(services) == []
    assert all("no incident for return" in (d.reason or "") for d in deliveries(services))
