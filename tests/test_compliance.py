"""The compliance topics, through the real path (signed POST /webhooks, the queue, the
handlers). Erasure is checked by scanning every text and JSON column of every table for the
customer afterwards; what belongs to other customers and other shops must be untouched."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from plugin.db import Base, utcnow
from plugin.models import (
    DataExport,
    Delivery,
    DiscountCode,
    Incident,
    Message,
    OutboxEmail,
    Shop,
    Task,
    TimelineEntry,
)
from tests.conftest import API_SECRET
from tests.factories import OTHER_SHOP, SHOP, make_shop, signed_webhook

JANE = {
    "id": 7700000000123,
    "email": "Jane.Doe@Example.com",
    "phone": "+15550100777",
    "first_name": "Jannika",
}
BOB = {"id": 7700000000456, "email": "bob@example.net", "phone": "+15550100888", "first_name": "Bartholomew"}


@dataclass
class Seeded:
    shop_id: int
    incident_ids: list[int]


def seed_customer(services, shop: Shop, who: dict[str, Any], order_id: int) -> Seeded:
    """What the jobs leave behind for one customer's late parcel: the incident with its
    timeline, the apology (and its outbox copy), the code, the task, the raw webhook and an
    earlier export."""
    webhook_id = str(uuid.uuid4())
    email, name = who["email"], who["first_name"]
    payload = {
        "id": order_id + 5,
        "order_id": order_id,
        "status": "delayed",
        "message": f"Carrier note for {name}",
        "customer": {"id": who["id"], "email": email, "phone": who["phone"]},
    }
    with services.db.session() as session:
        session.add(
            Delivery(
                webhook_id=webhook_id,
                topic="fulfillment_events/create",
                shop_domain=shop.domain,
                shop_id=shop.id,
                payload=json.dumps(payload),
                state="done",
            )
        )
        incident = Incident(
            shop_id=shop.id,
            kind="late_delivery",
            state="apologised",
            open_key=f"{order_id}:late_delivery",
            order_id=order_id,
            order_name=f"#{order_id}",
            customer_id=who["id"],
            customer_first_name=name,
            customer_email=email,
            customer_locale="en",
            marketing_consent=True,
            details={
                "status": "delayed",
                "what": f"{name}'s parcel is delayed",
                "tracking_number": "1Z999AA10123456784",
                "shipping_address": {"city": "Leeds", "phone": who["phone"]},
                "customer_id": who["id"],
                "refund_amount": 12.5,
            },
            needs_attention=f"Call {email} back",
        )
        session.add(incident)
        session.flush()
        session.add_all(
            [
                TimelineEntry(
                    incident_id=incident.id,
                    event="detected",
                    summary=f"Shipment delayed for {name} ({email})",
                    source="webhook:fulfillment_events/create",
                    webhook_id=webhook_id,
                    data={"customer": email, "phone": who["phone"]},
                ),
                TimelineEntry(
                    incident_id=incident.id,
                    event="email_sent",
                    summary=f"Apology sent to {email}",
                    source="job:send_apology",
                ),
            ]
        )
        message_id = f"<apology-{incident.id}@amends.example.test>"
        session.add(
            Message(
                shop_id=shop.id,
                incident_id=incident.id,
                kind="apology",
                message_id=message_id,
                state="sent",
                to_address=email,
                subject=f"Sorry, {name}",
                text_body=f"Dear {name}, your code is 7KXF-M3WC-HJ4P.",
                html_body=f"<p>Dear {name}</p>",
                sent_at=utcnow(),
            )
        )
        session.add(
            OutboxEmail(
                shop_id=shop.id,
                message_id=message_id,
                mail_from="Calm Coffee <hello@calm-coffee.example>",
                to_address=email,
                subject=f"Sorry, {name}",
                text_body=f"Dear {name}",
            )
        )
        session.add(
            DiscountCode(
                shop_id=shop.id,
                incident_id=incident.id,
                code=f"7KXF-M3WC-{order_id % 10000:04d}",
                compensation="percentage",
                value=Decimal("15"),
                state="created",
                error=f"first try refused for customer {who['id']}",
            )
        )
        session.add(
            Task(
                shop_id=shop.id,
                incident_id=incident.id,
                title=f"Late parcel for {name} (#{order_id})",
                notes=f"{name} asked us to write to {email}",
            )
        )
        session.add(
            DataExport(shop_id=shop.id, customer_id=who["id"], customer_email=email, payload={"name": name})
        )
        return Seeded(shop_id=shop.id, incident_ids=[incident.id])


@pytest.fixture
def seeded(services):
    shop = make_shop(services)
    other = make_shop(services, domain=OTHER_SHOP)
    return {
        "jane": seed_customer(services, shop, JANE, 1001),
        "bob": seed_customer(services, shop, BOB, 1002),
        "jane_elsewhere": seed_customer(services, other, JANE, 2001),
        "shop": shop,
        "other": other,
    }


def post(client, services, topic: str, payload: dict[str, Any], shop: str = SHOP, secret: str = API_SECRET):
    body, headers = signed_webhook(topic, payload, secret, shop=shop)
    response = client.post("/webhooks", data=body, headers=headers)
    assert services.queue.wait_idle(15)
    return response, headers["X-Shopify-Webhook-Id"]


def redact_payload(who: dict[str, Any], orders: list[int]) -> dict[str, Any]:
    return {
        "shop_id": 954889,
        "shop_domain": SHOP,
        "customer": {"id": who["id"], "email": who["email"], "phone": who["phone"]},
        "orders_to_redact": orders,
    }


# -- scanning the whole database ----------------------------------------------------------


@dataclass(frozen=True)
class Mention:
    table: str
    column: str
    shop: str | None


def scan(services, who: dict[str, Any]) -> list[Mention]:
    """Every text or JSON value, in every row of every table, that names the customer."""
    patterns = [re.compile(re.escape(who["email"]), re.IGNORECASE)]
    if who.get("phone"):
        patterns.append(re.compile(re.escape(who["phone"])))
    if who.get("id"):
        patterns.append(re.compile(rf"(?<!\d){who['id']}(?!\d)"))
    if who.get("first_name"):
        patterns.append(re.compile(re.escape(who["first_name"])))
    found: list[Mention] = []
    with services.db.engine.connect() as connection:
        shops = dict(connection.execute(sa.text("SELECT id, domain FROM shops")).all())
        incident_shops = dict(connection.execute(sa.text("SELECT id, shop_id FROM incidents")).all())
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(sa.select(table)).mappings():
                owner = _owner(table.name, row, shops, incident_shops)
                for column in table.c:
                    value = row[column.name]
                    if isinstance(value, bytes | memoryview):
                        continue  # Fernet ciphertext
                    if isinstance(value, dict | list):
                        value = json.dumps(value, ensure_ascii=False)
                    named = isinstance(value, str) and any(p.search(value) for p in patterns)
                    numbered = bool(who.get("id")) and isinstance(value, int) and value == who["id"]
                    if named or numbered:
                        found.append(Mention(table.name, column.name, owner))
    return found


def _owner(table: str, row: Any, shops: dict[int, str], incident_shops: dict[int, int]) -> str | None:
    if table == "shops":
        return row["domain"]
    if table == "deliveries":
        return row["shop_domain"]
    if "shop_id" in row and row["shop_id"] is not None:
        return shops.get(row["shop_id"])
    if "incident_id" in row and row["incident_id"] is not None:
        return shops.get(incident_shops.get(row["incident_id"], -1))
    return None


def count(services, model, **where) -> int:
    with services.db.session() as session:
        query = select(func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return session.scalar(query) or 0


# -- customers/redact ---------------------------------------------------------------------


def test_customer_redact_erases_the_customer_everywhere_in_that_shop(client, services, seeded):
    with services.db.session() as session:  # free text elsewhere that names her: the sweep's job
        task = session.scalar(select(Task).where(Task.incident_id == seeded["bob"].incident_ids[0]))
        task.notes = f"Same carrier problem as {JANE['email'].lower()} last week"
    before = scan(services, JANE)
    assert {m.table for m in before if m.shop == SHOP} >= {
        "incidents",
        "timeline_entries",
        "messages",
        "outbox",
        "tasks",
        "discount_codes",
        "deliveries",
        "data_exports",
    }, "the seed must put the customer in every table the test claims to check"
    counts = {
        m: count(services, m, shop_id=seeded["shop"].id) for m in (Incident, Message, DiscountCode, Task)
    }

    response, webhook_id = post(client, services, "customers/redact", redact_payload(JANE, [1001]))

    assert response.status_code == 200
    record = _delivery(services, webhook_id)
    assert record.state == "done", record.reason
    left = [m for m in scan(services, JANE) if m.shop == SHOP]
    assert left == [], f"the customer is still in: {left}"
    # Other stores keep their own data about the same person; other customers keep theirs.
    assert [m for m in scan(services, JANE) if m.shop == OTHER_SHOP]
    assert {m.table for m in scan(services, BOB) if m.shop == SHOP} == {
        m.table for m in before if m.shop == SHOP
    }
    with services.db.session() as session:
        task = session.scalar(select(Task).where(Task.incident_id == seeded["bob"].incident_ids[0]))
        assert task.notes == "Same carrier problem as [redacted] last week"
    # Non-personal counts stay.
    for model, number in counts.items():
        assert count(services, model, shop_id=seeded["shop"].id) == number
    with services.db.session() as session:
        incident = session.get(Incident, seeded["jane"].incident_ids[0])
        assert (incident.kind, incident.state, incident.order_id) == ("late_delivery", "apologised", 1001)
        assert incident.details["status"] == "delayed" and incident.details["refund_amount"] == 12.5
        events = [e.event for e in incident.timeline]
        assert events == ["detected", "email_sent", "customer_data_erased"]
        message = session.scalar(select(Message).where(Message.incident_id == incident.id))
        assert message.state == "sent" and message.sent_at is not None
        assert session.scalar(select(Task.title).where(Task.incident_id == incident.id)) == (
            "Follow up: order #1001 (late_delivery)"
        )


def test_customer_redact_by_email_alone_finds_the_customer(client, services, seeded):
    payload = {"shop_domain": SHOP, "customer": {"email": JANE["email"].upper()}, "orders_to_redact": []}
    post(client, services, "customers/redact", payload)
    left = [m for m in scan(services, {**JANE, "phone": None, "id": None}) if m.shop == SHOP]
    assert left == []


def test_customer_redact_for_a_customer_amends_never_saw_changes_nothing(client, services, seeded):
    stranger = {"id": 1, "email": "nobody@example.org", "phone": "+10000000000", "first_name": "Nobody"}
    before = sorted(scan(services, JANE) + scan(services, BOB), key=repr)
    response, _ = post(client, services, "customers/redact", redact_payload(stranger, [9999]))
    assert response.status_code == 200
    assert sorted(scan(services, JANE) + scan(services, BOB), key=repr) == before


def test_customer_redact_for_an_uninstalled_shop_still_erases(client, services, seeded):
    make_shop(services, uninstalled_at=utcnow(), access_token=None)
    post(client, services, "customers/redact", redact_payload(JANE, [1001]))
    assert [m for m in scan(services, JANE) if m.shop == SHOP] == []


# -- customers/data_request ---------------------------------------------------------------


def test_data_request_exports_everything_held_about_the_customer(client, services, seeded):
    payload = {
        "shop_id": 954889,
        "shop_domain": SHOP,
        "orders_requested": [1001],
        "customer": {"id": JANE["id"], "email": JANE["email"], "phone": JANE["phone"]},
        "data_request": {"id": 9999},
    }
    response, webhook_id = post(client, services, "customers/data_request", payload)
    assert response.status_code == 200

    with services.db.session() as session:
        exports = list(session.scalars(select(DataExport).where(DataExport.data_request_id == "9999")))
        assert len(exports) == 1
        export = exports[0]
        assert export.shop_id == seeded["shop"].id
        document = export.payload
        delivery = session.get(Delivery, _delivery_id(services, webhook_id))
        assert delivery.payload is None  # the export holds it now
    (incident,) = document["incidents"]
    assert incident["order_id"] == 1001 and incident["customer_first_name"] == JANE["first_name"]
    assert [e["event"] for e in incident["timeline"]] == ["detected", "email_sent"]
    assert incident["discount_code"]["code"] == "7KXF-M3WC-1001"
    assert incident["task"]["title"].startswith("Late parcel for")
    (email,) = document["emails"]
    assert email["to_address"] == JANE["email"] and "7KXF-M3WC-HJ4P" in email["text_body"]
    assert [w["topic"] for w in document["webhooks_received"]] == ["fulfillment_events/create"]
    text = json.dumps(document)
    assert BOB["email"] not in text and BOB["first_name"] not in text
    assert "2001" not in text, "nothing from the other store"

    post(client, services, "customers/data_request", payload)  # Shopify sends it again
    assert count(services, DataExport, data_request_id="9999") == 1


# -- shop/redact --------------------------------------------------------------------------


def rows_of(services, domain: str) -> dict[str, int]:
    """How many rows of each table belong to the shop."""
    with services.db.engine.connect() as connection:
        shops = dict(connection.execute(sa.text("SELECT id, domain FROM shops")).all())
        incident_shops = dict(connection.execute(sa.text("SELECT id, shop_id FROM incidents")).all())
        counts: dict[str, int] = {}
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(sa.select(table)).mappings():
                if _owner(table.name, row, shops, incident_shops) == domain:
                    counts[table.name] = counts.get(table.name, 0) + 1
    return counts


def test_shop_redact_deletes_everything_of_the_shop(client, services, seeded):
    make_shop(services, uninstalled_at=utcnow(), access_token=None)
    other_before = rows_of(services, OTHER_SHOP)
    assert len(rows_of(services, SHOP)) >= 9

    response, _ = post(client, services, "shop/redact", {"shop_id": 954889, "shop_domain": SHOP})

    assert response.status_code == 200
    assert rows_of(services, SHOP) == {}
    assert count(services, Shop, domain=SHOP) == 0
    assert rows_of(services, OTHER_SHOP) == other_before


def test_shop_redact_for_a_shop_that_reinstalled_erases_nothing(client, services, seeded):
    before = rows_of(services, SHOP)
    response, webhook_id = post(client, services, "shop/redact", {"shop_id": 954889, "shop_domain": SHOP})
    assert response.status_code == 200
    record = _delivery(services, webhook_id)
    assert record.state == "ignored" and "again" in record.reason
    after = rows_of(services, SHOP)
    assert after == {**before, "deliveries": before["deliveries"] + 1}


# -- signatures ---------------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["customers/data_request", "customers/redact", "shop/redact"])
def test_a_compliance_webhook_with_a_bad_hmac_gets_401_and_changes_nothing(client, services, seeded, topic):
    before = rows_of(services, SHOP)
    response, _ = post(client, services, topic, redact_payload(JANE, [1001]), secret="not-our-secret")
    assert response.status_code == 401
    assert rows_of(services, SHOP) == before


def _delivery(services, webhook_id: str) -> Delivery:
    with services.db.session() as session:
        found = session.scalar(select(Delivery).where(Delivery.webhook_id == webhook_id))
        assert found is not None
        return found


def _delivery_id(services, webhook_id: str) -> int:
    with services.db.session() as session:
        found = session.scalar(select(Delivery.id).where(Delivery.webhook_id == webhook_id))
        assert found is not None
        return found
