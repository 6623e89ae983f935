"""/api/overview, /api/outbox and /api/data-exports, each for one shop only."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from plugin.db import utcnow
from plugin.mailer import Email
from plugin.models import DataExport, DiscountCode, Shop, Task
from tests.admin_data import seed_incident
from tests.factories import OTHER_SHOP, SHOP, make_shop


def shop_id(services, domain: str) -> int:
    with services.db.session() as session:
        return session.scalar(select(Shop.id).where(Shop.domain == domain))


def test_overview_counts_this_week_tasks_codes_and_attention(admin_api, services):
    now = utcnow()
    seed_incident(services, SHOP, kind="late_delivery", opened_at=now - timedelta(hours=1))
    seed_incident(services, SHOP, kind="late_delivery", apologised=False, task=False)
    redeemed = seed_incident(services, SHOP, kind="refund", due_in=timedelta(hours=-2), needs_attention="x")
    # Not this week, but in the 14-day chart and the 30 days of codes; its task is not yet due.
    seed_incident(
        services, SHOP, kind="return", opened_at=now - timedelta(days=10), due_in=timedelta(days=20)
    )
    seed_incident(services, SHOP, kind="return", opened_at=now - timedelta(days=40), task=False)  # too old
    make_shop(services, OTHER_SHOP, name="Other Store")
    seed_incident(services, OTHER_SHOP, kind="refund", needs_attention="theirs")
    with services.db.session() as session:
        code = session.scalar(select(DiscountCode).where(DiscountCode.incident_id == redeemed.incident_id))
        code.redeemed_at = now
        code.redeemed_amount = Decimal("86.50")
        code.redeemed_currency = "USD"

    body = admin_api.get("/api/overview").get_json()
    assert body["shop"]["domain"] == SHOP and body["shop"]["test_mode"] is False
    assert body["incidents"]["late_delivery"] == {
        "detected": 1,
        "apologised": 1,
        "resolved": 0,
        "customer_told": 0,
    }
    assert body["incidents"]["refund"]["apologised"] == 1
    assert sum(body["incidents"]["return"].values()) == 0
    assert body["incidents_total"] == 3
    assert (body["open_tasks"], body["overdue_tasks"]) == (3, 1)
    assert (body["codes_sent"], body["codes_redeemed"]) == (3, 1)
    assert body["redeemed_revenue"] == [{"currency": "USD", "amount": "86.50"}]
    assert body["needs_attention"] == 1
    assert len(body["daily"]) == 14
    ten_days_ago = (now - timedelta(days=10)).date().isoformat()
    assert [d["return"] for d in body["daily"] if d["day"] == ten_days_ago] == [1]
    assert sum(d["late_delivery"] + d["refund"] + d["return"] for d in body["daily"]) == 4


def test_overview_of_an_empty_shop(admin_api):
    body = admin_api.get("/api/overview").get_json()
    assert body["incidents_total"] == 0 and body["redeemed_revenue"] == [] and body["needs_attention"] == 0


def send(services, domain: str, subject: str, n: int) -> None:
    services.mailer.send(
        Email(
            to="qa@calm-coffee.example",
            subject=subject,
            text=f"text {n}",
            html=f"<p>html {n}</p>",
            mail_from="Calm Coffee <amends@example.test>",
            message_id=f"<{domain}-{n}@amends.test>",
            shop_id=shop_id(services, domain),
        )
    )


def test_outbox_lists_this_shops_mail_newest_first_in_pages(admin_api, services):
    make_shop(services, OTHER_SHOP, name="Other Store")
    for n in range(3):
        send(services, SHOP, f"Ours {n}", n)
    send(services, OTHER_SHOP, "Theirs", 99)
    first = admin_api.get("/api/outbox?limit=2").get_json()
    assert first["transport"] == "outbox" and first["test_mode"] is False
    assert [m["subject"] for m in first["items"]] == ["Ours 2", "Ours 1"]
    assert first["items"][0]["html_body"] == "<p>html 2</p>" and first["items"][0]["text_body"] == "text 2"
    second = admin_api.get(
        "/api/outbox", query_string={"limit": 2, "cursor": first["next_cursor"]}
    ).get_json()
    assert [m["subject"] for m in second["items"]] == ["Ours 0"] and second["next_cursor"] is None
    assert admin_api.get("/api/outbox?cursor=xyz").status_code == 422


def test_data_exports_list_and_download_only_this_shops(admin_api, services):
    make_shop(services, OTHER_SHOP, name="Other Store")
    with services.db.session() as session:
        ours = DataExport(
            shop_id=shop_id(services, SHOP),
            customer_id=7001,
            customer_email="ada@example.test",
            data_request_id="9999",
            payload={"customer": {"email": "ada@example.test"}, "incidents": [{"order_name": "#1001"}]},
        )
        theirs = DataExport(
            shop_id=shop_id(services, OTHER_SHOP), customer_email="x@example.test", payload={}
        )
        session.add_all([ours, theirs])
    listed = admin_api.get("/api/data-exports").get_json()["items"]
    assert [(e["id"], e["customer_email"], e["data_request_id"]) for e in listed] == [
        (ours.id, "ada@example.test", "9999")
    ]
    download = admin_api.get(f"/api/data-exports/{ours.id}")
    assert download.status_code == 200
    assert (
        download.headers["Content-Disposition"]
        == f'attachment; filename="amends-data-request-{ours.id}.json"'
    )
    assert download.headers["Cache-Control"] == "no-store"
    assert json.loads(download.get_data()) == ours.payload
    assert admin_api.get(f"/api/data-exports/{theirs.id}").status_code == 404
    assert admin_api.get("/api/data-exports/123456").status_code == 404


def test_task_counts_ignore_done_tasks(admin_api, services):
    done = seed_incident(services, SHOP, due_in=timedelta(hours=-5))
    with services.db.session() as session:
        session.get(Task, done.task_id).status = "done"
    body = admin_api.get("/api/overview").get_json()
    assert (body["open_tasks"], body["overdue_tasks"]) == (0, 0)
