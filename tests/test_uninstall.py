"""app/uninstalled, through the real path: a signed POST /webhooks, the queue, the handler.
The shop is marked uninstalled and its tokens dropped; incidents stay until shop/redact; a
reinstall brings the shop back; a late uninstall does not undo a reinstall."""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from plugin import tokens
from plugin.db import utcnow
from plugin.errors import ShopNotFoundError
from plugin.models import Delivery, Incident, Shop
from tests.auth_fakes import AdminApi, TokenEndpoint, signed_query
from tests.conftest import API_SECRET
from tests.factories import SHOP, make_shop, signed_webhook

SHOP_PAYLOAD = {"id": 548380009, "name": "Calm Coffee", "domain": SHOP, "myshopify_domain": SHOP}


def post_uninstall(client, services, **headers: str):
    body, signed = signed_webhook("app/uninstalled", SHOP_PAYLOAD, API_SECRET, **headers)
    response = client.post("/webhooks", data=body, headers=signed)
    assert services.queue.wait_idle(10)
    return response, signed["X-Shopify-Webhook-Id"]


def load(services) -> Shop:
    with services.db.session() as session:
        shop = session.scalar(select(Shop).where(Shop.domain == SHOP))
        assert shop is not None
        return shop


def delivery(services, webhook_id: str) -> Delivery:
    with services.db.session() as session:
        found = session.scalar(select(Delivery).where(Delivery.webhook_id == webhook_id))
        assert found is not None
        return found


def incidents(services) -> int:
    with services.db.session() as session:
        return session.scalar(select(func.count()).select_from(Incident)) or 0


def test_uninstall_marks_the_shop_drops_its_tokens_and_keeps_its_incidents(client, services):
    shop = make_shop(services, expires_in=timedelta(hours=1), refresh_token="shprt_x")
    with services.db.session() as session:
        session.add(Incident(shop_id=shop.id, kind="refund", order_id=1001, open_key="1001:refund"))

    response, webhook_id = post_uninstall(client, services)

    assert response.status_code == 200
    assert delivery(services, webhook_id).state == "done"
    gone = load(services)
    assert not gone.installed and gone.uninstalled_at is not None
    assert gone.access_token is None and gone.refresh_token is None
    assert gone.access_token_expires_at is None and gone.refresh_token_expires_at is None
    assert incidents(services) == 1
    with pytest.raises(ShopNotFoundError):
        tokens.access_token(services, SHOP)


def test_work_for_an_uninstalled_shop_stops(client, services):
    make_shop(services)
    post_uninstall(client, services)
    body, headers = signed_webhook("refunds/create", {"id": 1, "order_id": 1001}, API_SECRET)
    assert client.post("/webhooks", data=body, headers=headers).status_code == 200
    assert services.queue.wait_idle(10)
    refund = delivery(services, headers["X-Shopify-Webhook-Id"])
    assert refund.state == "ignored" and "not installed" in refund.reason
    assert incidents(services) == 0


def test_a_second_uninstall_changes_nothing(client, services):
    make_shop(services)
    post_uninstall(client, services)
    first = load(services).uninstalled_at
    _, webhook_id = post_uninstall(client, services)
    assert delivery(services, webhook_id).state == "ignored"
    assert load(services).uninstalled_at == first


def test_an_uninstall_delivered_after_a_reinstall_is_ignored(client, services):
    make_shop(services)  # installed just now
    earlier = (utcnow() - timedelta(minutes=5)).isoformat()
    _, webhook_id = post_uninstall(client, services, **{"X-Shopify-Triggered-At": earlier})
    record = delivery(services, webhook_id)
    assert record.state == "ignored" and "again" in record.reason
    shop = load(services)
    assert shop.installed and services.cipher.decrypt(shop.access_token) == "shpat_test_token"


def test_a_forged_uninstall_is_refused(client, services):
    make_shop(services)
    body, headers = signed_webhook("app/uninstalled", SHOP_PAYLOAD, "not-our-secret")
    assert client.post("/webhooks", data=body, headers=headers).status_code == 401
    assert services.queue.wait_idle(10)
    assert load(services).installed


def test_uninstall_then_reinstall(client, services, shopify):
    endpoint = TokenEndpoint(shopify)
    AdminApi(shopify, accept_any_token=True)
    shop = make_shop(services)
    with services.db.session() as session:
        session.add(Incident(shop_id=shop.id, kind="return", order_id=1002, open_key="1002:return"))
    post_uninstall(client, services)
    assert not load(services).installed

    location = client.get("/auth/install", query_string={"shop": SHOP}).headers["Location"]
    nonce = parse_qs(urlsplit(location).query)["state"][0]
    query = signed_query(
        {"code": "abc", "shop": SHOP, "state": nonce, "timestamp": str(int(time.time())), "host": "x"}
    )
    assert client.get("/auth/callback", query_string=query).status_code == 302
    assert services.queue.wait_idle(10)
    back = load(services)
    assert back.id == shop.id and back.installed and back.uninstalled_at is None
    assert services.cipher.decrypt(back.access_token) == endpoint.granted[-1]["access_token"]
    assert incidents(services) == 1
