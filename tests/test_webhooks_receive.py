"""POST /webhooks: the status table, duplicates, unknown topics and shops, and what happens
when the queue or the database is down. Every rejection creates no work."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from plugin.db import utcnow
from plugin.models import Delivery
from plugin.models.delivery import DONE, IGNORED, PENDING
from plugin.signing import webhook_signature
from plugin.worker import run_worker
from tests import services as real
from tests.conftest import API_SECRET, OLD_SECRET, make_config
from tests.factories import OTHER_SHOP, SHOP, make_shop, signed_webhook
from tests.intake import (
    ORDER_ID,
    deliveries,
    drain,
    incidents,
    payload,
    post,
)
from tests.shopify_fake import FakeAdmin
from wsgi import create_app

DELAYED = payload("fulfillment_event_delayed")


def _valid() -> tuple[bytes, dict[str, str]]:
    return signed_webhook("fulfillment_events/create", DELAYED, API_SECRET)


def _drop(name: str):
    def change(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        headers.pop(name)
        return body, headers

    return change


def _resign(body: bytes):
    def change(_body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        headers["X-Shopify-Hmac-Sha256"] = webhook_signature(body, API_SECRET)
        return body, headers

    return change


def _header(name: str, value: str):
    def change(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        headers[name] = value
        return body, headers

    return change


def _tampered(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return body.replace(b"delayed", b"delivered"), headers


REJECTIONS = [
    ("missing_hmac", _drop("X-Shopify-Hmac-Sha256"), 401),
    ("empty_hmac", _header("X-Shopify-Hmac-Sha256", ""), 401),
    (
        "wrong_secret",
        lambda b, h: (b, {**h, "X-Shopify-Hmac-Sha256": webhook_signature(b, "not-the-secret")}),
        401,
    ),
    ("tampered_body", _tampered, 401),
    ("hmac_not_base64", _header("X-Shopify-Hmac-Sha256", "ünicode-signature"), 401),
    ("missing_topic", _drop("X-Shopify-Topic"), 400),
    ("missing_shop", _drop("X-Shopify-Shop-Domain"), 400),
    ("shop_not_myshopify", _header("X-Shopify-Shop-Domain", "evil.example.com"), 400),
    ("missing_webhook_id", _drop("X-Shopify-Webhook-Id"), 400),
    ("topic_too_long", _header("X-Shopify-Topic", "products/" + "x" * 300), 400),
    ("api_version_too_long", _header("X-Shopify-API-Version", "2026-07" + "9" * 100), 400),
    ("invalid_utf8", _resign(b'{"id": "\xff\xfe"}'), 400),
    ("not_json", _resign(b"{not json"), 400),
    ("json_array", _resign(b"[1, 2, 3]"), 400),
    ("json_string", _resign(b'"text"'), 400),
    ("deeply_nested", _resign(b"[" * 100_000 + b"]" * 100_000), 400),
]


@pytest.mark.parametrize(("case", "change", "status"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejections_get_their_status_and_create_no_work(
    client, services, intake, caplog, case, change, status
):
    body, headers = change(*_valid())
    with caplog.at_level(logging.WARNING, logger="webhooks.views"):
        response = client.post("/webhooks", data=body, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json and response.json["result"] != "accepted"
    drain(services)
    assert deliveries(services) == []
    assert incidents(services) == []
    assert intake.calls == []
    # The reason is logged; the signature and the body's personal data are not.
    assert any("webhook rejected" in r.getMessage() for r in caplog.records)
    logged = caplog.text
    assert headers.get("X-Shopify-Hmac-Sha256", "") == "" or headers["X-Shopify-Hmac-Sha256"] not in logged
    assert "Weather delay" not in logged


def test_the_old_secret_is_accepted_during_rotation(client, services, intake):
    body, headers = signed_webhook("fulfillment_events/create", DELAYED, OLD_SECRET)
    assert client.post("/webhooks", data=body, headers=headers).status_code == 200
    drain(services)
    assert len(incidents(services)) == 1


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_get_405(client, services, method):
    response = client.open("/webhooks", method=method, data=b"{}")
    assert response.status_code == 405
    assert deliveries(services) == []


def test_a_body_over_the_limit_gets_413_and_is_not_read(database_url, shopify):
    app = create_app(make_config(database_url, webhook_max_bytes=2_000))
    services = app.extensions["amends"]
    real.empty_tables(services.db.engine)
    try:
        make_shop(services)
        big = dict(DELAYED, message="x" * 3_000)
        body, headers = signed_webhook("fulfillment_events/create", big, API_SECRET)
        response = app.test_client().post("/webhooks", data=body, headers=headers)
        assert response.status_code == 413
        assert response.json["result"] == "too_large"
        assert deliveries(services) == []
        # Just under the limit is fine.
        small = dict(DELAYED, message="x" * 1_000)
        body, headers = signed_webhook("fulfillment_events/create", small, API_SECRET)
        FakeAdmin().install(shopify)
        assert app.test_client().post("/webhooks", data=body, headers=headers).status_code == 200
        drain(services)
    finally:
        services.close()


def test_a_valid_delivery_is_recorded_enqueued_and_processed_once(client, services, intake):
    webhook_id = str(uuid.uuid4())
    answers = [
        post(client, "fulfillment_events/create", DELAYED, webhook_id=webhook_id).json["result"]
        for _ in range(3)
    ]
    assert answers == ["accepted", "duplicate", "duplicate"]
    drain(services)
    [delivery] = deliveries(services)
    assert (delivery.webhook_id, delivery.state, delivery.attempts) == (webhook_id, DONE, 1)
    assert delivery.topic == "fulfillment_events/create" and delivery.shop_domain == SHOP
    assert len(incidents(services)) == 1
    assert len(intake.of("order")) == 1


def test_a_delivery_that_needs_no_work_is_answered_without_a_write(client, services, intake):
    response = post(client, "fulfillment_events/create", payload("fulfillment_event_in_transit"))
    assert response.status_code == 200
    assert response.json["result"] == "ignored"
    assert "in_transit" in response.json["message"]
    drain(services)
    assert deliveries(services) == []
    assert intake.calls == []


def test_an_unknown_topic_is_recorded_as_ignored_without_its_payload(client, services, intake):
    response = post(client, "products/update", {"id": 1, "title": "Beans", "email": "x@example.com"})
    assert response.status_code == 200
    drain(services)
    [delivery] = deliveries(services)
    assert delivery.state == IGNORED
    assert delivery.reason == "topic products/update is not handled by Amends"
    assert delivery.payload is None
    assert incidents(services) == []


@pytest.mark.parametrize("installed", [False, True], ids=["unknown_shop", "uninstalled_shop"])
def test_a_shop_that_is_not_installed_gets_nothing_done(client, services, intake, installed):
    if installed:
        make_shop(services, domain=OTHER_SHOP, uninstalled_at=utcnow())
    response = post(client, "fulfillment_events/create", DELAYED, shop=OTHER_SHOP)
    assert response.status_code == 200 and response.json["result"] == "accepted"
    drain(services)
    [delivery] = deliveries(services)
    assert delivery.state == IGNORED
    assert OTHER_SHOP in (delivery.reason or "")
    assert ("has not installed" if installed else "is not known") in (delivery.reason or "")
    assert delivery.payload is None  # no customer data kept for a shop we do not serve
    assert incidents(services) == []
    assert intake.calls == []


def test_queue_down_still_answers_200_and_the_sweep_recovers_every_delivery(
    database_url, redis_url, shopify, caplog
):
    from actions.sweep import sweep

    down = create_app(make_config(database_url, redis_url=f"redis://127.0.0.1:{real.free_port()}/0"))
    services = down.extensions["amends"]
    real.empty_tables(services.db.engine)
    admin = FakeAdmin().install(shopify)
    make_shop(services, test_mode=True)
    orders = [ORDER_ID + n for n in range(5)]
    for order_id in orders:
        admin.orders[order_id] = _order(order_id)
    client = down.test_client()
    with caplog.at_level(logging.ERROR, logger="webhooks.views"):
        for n, order_id in enumerate(orders):
            event = dict(DELAYED, id=DELAYED["id"] + n, order_id=order_id, fulfillment_id=100 + n)
            response = post(client, "fulfillment_events/create", event)
            assert response.status_code == 200, response.get_data(as_text=True)
            assert response.json["result"] == "accepted"
    if services.db.dialect != "postgresql":  # there the web hands off by notification, not Redis
        assert "recorded but not enqueued" in caplog.text
    assert [d.state for d in deliveries(services)] == [PENDING] * 5
    services.close()

    # The queue is back. Fresh deliveries are left to their own jobs; old ones are swept.
    up = create_app(make_config(database_url, redis_url=redis_url))
    services = up.extensions["amends"]
    try:
        assert sweep()["deliveries"] == 0  # not "a while" yet
        with services.db.session() as session:
            session.execute(sa.update(Delivery).values(received_at=utcnow() - timedelta(minutes=5)))
        assert sweep()["deliveries"] == 5
        run_worker(services, burst=True)
        assert [d.state for d in deliveries(services)] == [DONE] * 5
        assert sorted(i.order_id for i in incidents(services)) == orders
        assert sweep()["deliveries"] == 0  # nothing left to recover
    finally:
        services.close()


def test_database_down_answers_503_so_that_shopify_retries(shopify):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{real.free_port()}/amends"
    app = create_app(make_config(url))
    services = app.extensions["amends"]
    try:
        body, headers = signed_webhook("fulfillment_events/create", DELAYED, API_SECRET)
        response = app.test_client().post("/webhooks", data=body, headers=headers)
        assert response.status_code == 503
        assert response.json["result"] == "unavailable"
        # A delivery that needs no work is still answered: nothing had to be stored.
        body, headers = signed_webhook(
            "fulfillment_events/create", payload("fulfillment_event_in_transit"), API_SECRET
        )
        assert app.test_client().post("/webhooks", data=body, headers=headers).status_code == 200
    finally:
        services.close()


def test_the_answer_is_json_with_a_result(client, services, intake):
    response = post(client, "fulfillment_events/create", DELAYED)
    assert response.headers["Content-Type"] == "application/json"
    assert json.loads(response.data) == {"result": "accepted", "message": "recorded"}
    drain(services)


def _order(order_id: int) -> dict:
    from tests.intake import context_order

    return context_order(order_id)


def test_with_redis_the_receiver_hands_off_and_a_worker_does_the_work(database_url, redis_url, shopify):
    app = create_app(make_config(database_url, redis_url=redis_url))
    services = app.extensions["amends"]
    real.empty_tables(services.db.engine)
    admin = FakeAdmin().install(shopify)
    admin.orders[ORDER_ID] = _order(ORDER_ID)
    make_shop(services, test_mode=True)
    handoffs = real.HandOffs(services)
    try:
        response = post(app.test_client(), "fulfillment_events/create", DELAYED)
        assert response.status_code == 200 and response.json["result"] == "accepted"
        # Recorded and handed off with the commit (a notification on PostgreSQL, one RPUSH
        # elsewhere); RQ's job is made by a worker's listener or dispatcher.
        [delivery] = deliveries(services)
        assert delivery.state == PENDING
        assert handoffs.items() == [
            ("actions.deliveries.process_delivery", [delivery.id], f"delivery-{delivery.id}")
        ]
        assert services.queue.rq.count == 0

        run_worker(services, burst=True)
        assert [d.state for d in deliveries(services)] == [DONE]
        assert [i.order_id for i in incidents(services)] == [ORDER_ID]
    finally:
        handoffs.close()
        services.close()


@pytest.mark.skipif(real.target_engine() != "postgres", reason="a server-side connection to end")
def test_a_pooled_connection_the_database_ended_costs_no_delivery(database_url, client, services, intake):
    # The receiver's autocommit pool skips the pre-ping round trip; a connection found dead
    # (a database restart, an idle timeout) is replaced and the INSERT tried once more.
    assert post(client, "fulfillment_events/create", DELAYED).status_code == 200
    with services.db.autocommit.connect() as connection:
        pid = connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    with services.db.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()

    response = post(client, "fulfillment_events/create", dict(DELAYED, id=DELAYED["id"] + 1))

    assert response.status_code == 200 and response.json["result"] == "accepted"
    assert len(deliveries(services)) == 2
    drain(services)
