"""fulfillment_events/create and fulfillments/update → late-delivery incidents: opening,
joining, resolving, duplicates under new webhook ids, out-of-order deliveries, protected
fields withheld, and Shopify failing while the incident is opened."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from plugin.models import Message, Shop
from plugin.models.delivery import DONE, IGNORED
from plugin.models.incident import LATE_DELIVERY, RESOLVED
from tests.intake import (
    FULFILLMENT_ID,
    ORDER_ID,
    context_order,
    deliveries,
    drain,
    incidents,
    intake_events,
    keys,
    payload,
    post,
    timeline,
)
from tests.shopify_fake import FakeAdmin

EVENTS = "fulfillment_events/create"
UPDATES = "fulfillments/update"


def event(status: str, happened_at: str, event_id: int, fulfillment_id: int = FULFILLMENT_ID, **changes):
    base = "fulfillment_event_delivered" if status == "delivered" else "fulfillment_event_delayed"
    return payload(
        base, status=status, happened_at=happened_at, id=event_id, fulfillment_id=fulfillment_id, **changes
    )


def apologies(services) -> list[Message]:
    with services.db.session() as session:
        return list(session.scalars(select(Message).where(Message.kind == "apology")))


def test_a_delayed_event_opens_an_incident_with_the_order_context(client, services, intake):
    webhook_id = str(uuid.uuid4())
    assert (
        post(client, EVENTS, payload("fulfillment_event_delayed"), webhook_id=webhook_id).status_code == 200
    )
    drain(services)
    [incident] = incidents(services)
    assert (incident.kind, incident.order_id) == (LATE_DELIVERY, ORDER_ID)
    assert incident.is_open and incident.open_key == f"{ORDER_ID}:{LATE_DELIVERY}"
    assert incident.order_name == "#1042"
    assert (incident.customer_id, incident.customer_first_name) == (7_000_000_001, "Jane")
    assert incident.customer_email == "jane@example.test"
    # Consent is asked for only by shops that respect it (off by default): unknown here.
    assert incident.customer_locale == "en" and incident.marketing_consent is None
    assert incident.missing == []
    assert incident.details["status"] == "delayed"
    assert incident.details["summary"] == "your parcel is delayed"
    assert incident.details["message"] == "Weather delay at the regional hub"
    shipment = incident.details["shipments"][str(FULFILLMENT_ID)]
    assert shipment["status"] == "delayed"
    [tracked] = incident.details["order"]["shipments"]
    assert tracked["tracking"][0]["number"] == "7023210039414604"
    # On the timeline: the time it happened, the topic and the webhook id.
    [entry] = intake_events(services, incident.id)
    assert entry.event == "detected"
    assert entry.source == "webhook:fulfillment_events/create"
    assert entry.webhook_id == webhook_id
    assert entry.at.isoformat() == "2026-10-02T13:15:00+00:00"
    # One query for the order's context, and it asked for what the incident needs.
    [call] = intake.of("order")
    assert call.variables == {"id": f"gid://shopify/Order/{ORDER_ID}"}
    for field in ("firstName", "email", "locale", "trackingInfo"):
        assert field in call.document
    assert "fulfillmentOrders" not in call.document  # the promise: not used, 4 points
    assert "emailMarketingConsent" not in call.document  # not used by this shop, 1 point
    assert len(apologies(services)) == 1


def test_a_shop_that_respects_marketing_consent_reads_it_with_the_order(client, services, intake):
    from tests.actions_support import set_settings

    with services.db.session() as session:
        shop_id = session.scalars(select(Shop.id)).one()
    set_settings(services, shop_id, {"shop": {"respect_marketing_consent": True}})
    post(client, EVENTS, payload("fulfillment_event_delayed"))
    drain(services)
    [incident] = incidents(services)
    assert incident.marketing_consent is True
    [call] = intake.of("order")
    assert "emailMarketingConsent" in call.document


@pytest.mark.parametrize("status", ["failure", "attempted_delivery"])
def test_failure_and_attempted_delivery_open_one_too(client, services, intake, status):
    post(client, EVENTS, event(status, "2026-10-02T09:15:00-04:00", 1))
    drain(services)
    [incident] = incidents(services)
    assert incident.details["status"] == status


@pytest.mark.parametrize(
    "status",
    ["label_purchased", "label_printed", "confirmed", "in_transit", "out_for_delivery", "ready_for_pickup"],
)
def test_other_statuses_need_no_work(client, services, intake, status):
    response = post(client, EVENTS, event(status, "2026-10-02T09:15:00-04:00", 1))
    assert response.json["result"] == "ignored"
    drain(services)
    assert deliveries(services) == [] and incidents(services) == []


def test_a_second_problem_joins_the_open_incident_without_a_second_apology(client, services, intake):
    post(client, EVENTS, event("delayed", "2026-10-02T09:15:00-04:00", 1))
    drain(services)
    post(client, EVENTS, event("attempted_delivery", "2026-10-04T15:00:00-04:00", 2))
    drain(services)
    [incident] = incidents(services)
    assert [e.event for e in intake_events(services, incident.id)] == ["detected", "signal"]
    assert incident.details["status"] == "attempted_delivery"  # the newest news
    assert len(intake.of("order")) == 1  # context read once, for the new incident
    assert len(apologies(services)) == 1


def test_delivered_resolves_the_incident(client, services, intake):
    post(client, EVENTS, event("delayed", "2026-10-02T09:15:00-04:00", 1))
    drain(services)
    webhook_id = str(uuid.uuid4())
    post(client, EVENTS, event("delivered", "2026-10-06T13:40:00-04:00", 2), webhook_id=webhook_id)
    drain(services)
    [incident] = incidents(services)
    assert (
        incident.resolved_at is not None and incident.resolved_at.isoformat() == "2026-10-06T17:40:00+00:00"
    )
    assert incident.resolved_by == "webhook:fulfillment_events/create"
    assert incident.state in (RESOLVED, "customer_told")
    assert incident.open_key is None
    resolved = [e for e in timeline(services, incident.id) if e.event == "resolved"]
    assert [e.webhook_id for e in resolved] == [webhook_id]


def test_delivered_with_nothing_open_changes_nothing(client, services, intake):
    post(client, EVENTS, event("delivered", "2026-10-06T13:40:00-04:00", 2))
    drain(services)
    assert incidents(services) == []
    [delivery] = deliveries(services)
    assert delivery.state == IGNORED and "no open late-delivery incident" in (delivery.reason or "")


def test_the_same_event_under_new_webhook_ids_is_applied_once(client, services, intake):
    delayed = event("delayed", "2026-10-02T09:15:00-04:00", 1)
    for _ in range(3):
        assert post(client, EVENTS, delayed).json["result"] == "accepted"
        drain(services)
    [incident] = incidents(services)
    assert len(intake_events(services, incident.id)) == 1
    assert keys(services).count("fulfillment_event:1") == 1
    states = [(d.state, d.reason) for d in deliveries(services)]
    assert states[0] == (DONE, None)
    assert states[1:] == [(IGNORED, "already applied (fulfillment_event:1)")] * 2
    assert len(apologies(services)) == 1


def test_a_delay_that_happened_before_a_known_delivery_does_not_reopen(client, services, intake):
    post(client, EVENTS, event("delayed", "2026-10-02T09:15:00-04:00", 1))
    drain(services)
    post(client, EVENTS, event("delivered", "2026-10-06T13:40:00-04:00", 3))
    drain(services)
    # An event from in between arrives last (webhooks are not ordered).
    post(client, EVENTS, event("failure", "2026-10-04T10:00:00-04:00", 2))
    drain(services)
    [incident] = incidents(services)
    assert incident.resolved_at is not None
    assert intake_events(services, incident.id)[-1].event == "stale_signal"
    assert deliveries(services)[-1].state == IGNORED


def test_delivered_arriving_first_keeps_the_earlier_delay_from_opening(client, services, intake):
    post(client, EVENTS, event("delivered", "2026-10-06T13:40:00-04:00", 3))
    drain(services)
    post(client, EVENTS, event("delayed", "2026-10-02T09:15:00-04:00", 1))
    drain(services)
    assert incidents(services) == []
    assert "was delivered at 2026-10-06 17:40 UTC" in (deliveries(services)[-1].reason or "")
    # A problem after the delivery (a new shipment of the order) still opens one.
    post(client, EVENTS, event("delayed", "2026-10-09T09:00:00-04:00", 4, fulfillment_id=999))
    drain(services)
    assert len(incidents(services)) == 1


def test_shopify_reporting_the_parcel_delivered_since_keeps_a_late_delay_from_opening(
    client, services, intake
):
    order = context_order()
    order["fulfillments"][0]["deliveredAt"] = "2026-10-06T17:40:00Z"
    intake.orders[ORDER_ID] = order
    post(client, EVENTS, event("delayed", "2026-10-02T09:15:00-04:00", 1))
    drain(services)
    assert incidents(services) == []
    assert "Shopify reports shipment" in (deliveries(services)[-1].reason or "")


def test_every_late_shipment_must_arrive_before_it_resolves(client, services, intake):
    post(client, EVENTS, event("delayed", "2026-10-02T09:15:00-04:00", 1, fulfillment_id=11))
    post(client, EVENTS, event("delayed", "2026-10-02T10:15:00-04:00", 2, fulfillment_id=22))
    drain(services)
    post(client, EVENTS, event("delivered", "2026-10-05T10:00:00-04:00", 3, fulfillment_id=11))
    drain(services)
    [incident] = incidents(services)
    assert incident.is_open
    assert "still late: 22" in intake_events(services, incident.id)[-1].summary
    post(client, EVENTS, event("delivered", "2026-10-06T10:00:00-04:00", 4, fulfillment_id=22))
    drain(services)
    [incident] = incidents(services)
    assert not incident.is_open


def test_fulfillment_updates_open_and_resolve_too(client, services, intake):
    update = payload("fulfillment_update")
    webhook_id = str(uuid.uuid4())
    post(client, UPDATES, update, webhook_id=webhook_id)
    drain(services)
    [incident] = incidents(services)
    assert incident.details["status"] == "failure"
    assert incident.details["tracking_numbers"] == ["7023210039414604"]
    assert intake_events(services, incident.id)[0].webhook_id == webhook_id
    # The same update again, under a new webhook id: nothing more.
    post(client, UPDATES, update)
    drain(services)
    assert len(intake_events(services, incident.id)) == 1
    post(client, UPDATES, dict(update, shipment_status="delivered", updated_at="2026-10-06T14:00:00-04:00"))
    drain(services)
    [incident] = incidents(services)
    assert incident.resolved_by == "webhook:fulfillments/update"


@pytest.mark.parametrize("status", [None, "in_transit", "confirmed", "label_printed"])
def test_fulfillment_updates_without_a_relevant_status_need_no_work(client, services, intake, status):
    response = post(client, UPDATES, payload("fulfillment_update", shipment_status=status))
    assert response.json["result"] == "ignored"
    drain(services)
    assert deliveries(services) == []


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({"customer_id": None, "email": None}, ["customer", "email"]),
        ({"customer_id": None}, ["customer"]),  # the order's own email still reaches us
        ({"first_name": None, "email": None}, ["first_name", "email"]),
    ],
)
def test_withheld_protected_fields_are_named_on_the_incident(client, services, intake, fields, missing):
    intake.orders[ORDER_ID] = context_order(**fields)
    post(client, EVENTS, payload("fulfillment_event_delayed"))
    drain(services)
    [incident] = incidents(services)
    assert incident.missing == missing
    assert incident.order_name == "#1042"


def test_shopify_failing_records_the_incident_and_reads_the_context_later(client, services, intake):
    intake.fail_next("order", FakeAdmin.server_error(503, retry_after="60"))
    post(client, EVENTS, payload("fulfillment_event_delayed"))
    drain(services)
    [incident] = incidents(services)
    # Recorded at once, then completed by the context job (which enqueued the apology).
    events = [e.event for e in timeline(services, incident.id)]
    assert events[0] == "detected"
    assert "context_loaded" in events
    assert incident.missing == []
    assert incident.customer_email == "jane@example.test"
    assert len(intake.of("order")) == 2
    assert deliveries(services)[0].state == DONE
    assert len(apologies(services)) == 1


def test_an_order_shopify_does_not_know_is_recorded_as_missing(client, services, intake):
    del intake.orders[ORDER_ID]
    post(client, EVENTS, payload("fulfillment_event_delayed"))
    drain(services)
    [incident] = incidents(services)
    assert incident.missing == ["order"]
    assert incident.order_name is None and incident.customer_email is None


def test_duplicates_processed_at_the_same_moment_make_one_incident(database_url, redis_url, shopify):
    """Two workers take two deliveries of the same event at once: the business keys decide."""
    import threading

    from actions.deliveries import process_delivery
    from plugin.errors import RetryableError
    from tests import services as real
    from tests.conftest import make_config
    from tests.factories import make_shop
    from wsgi import create_app

    app = create_app(make_config(database_url, redis_url=redis_url))  # Redis, no worker running
    services = app.extensions["amends"]
    real.empty_tables(services.db.engine)
    try:
        make_shop(services, test_mode=True)
        admin = FakeAdmin().install(shopify)
        admin.orders[ORDER_ID] = context_order()
        delayed = payload("fulfillment_event_delayed")
        for _ in range(4):
            assert post(app.test_client(), EVENTS, delayed).json["result"] == "accepted"
        ids = [d.id for d in deliveries(services)]
        start = threading.Barrier(len(ids))
        retried: list[int] = []

        def work(delivery_id: int) -> None:
            start.wait()
            try:
                process_delivery(delivery_id)
            except RetryableError:
                retried.append(delivery_id)

        threads = [threading.Thread(target=work, args=(i,)) for i in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        for delivery_id in retried:  # what the queue's retry does
            process_delivery(delivery_id)
        [incident] = incidents(services)
        assert len(intake_events(services, incident.id)) == 1
        assert sorted(d.state for d in deliveries(services)) == [DONE, IGNORED, IGNORED, IGNORED]
    finally:
        services.close()
