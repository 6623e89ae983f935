"""GET/POST /api/incidents…: filters, search, cursor pages, the detail, resolve and retry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from rq import Queue
from sqlalchemy import select

from plugin.db import utcnow
from plugin.models import Incident, Message, Task, TimelineEntry
from tests.admin_data import seed_incident
from tests.factories import OTHER_SHOP, SHOP, make_shop


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.get_json()
    return [item["id"] for item in response.get_json()["items"]]


def test_lists_newest_first_with_the_summary(admin_api, services):
    older = seed_incident(services, SHOP, order_name="#1001", opened_at=utcnow() - timedelta(hours=2))
    newer = seed_incident(services, SHOP, order_name="#1002", kind="refund")
    body = admin_api.get("/api/incidents").get_json()
    assert [i["id"] for i in body["items"]] == [newer.incident_id, older.incident_id]
    first = body["items"][0]
    assert first["order_name"] == "#1002" and first["kind"] == "refund" and first["is_open"] is True
    assert first["customer_email"] == "ada@example.test"
    assert body["next_cursor"] is None


def test_filters_by_kind_state_and_dates(admin_api, services):
    now = utcnow()
    late = seed_incident(services, SHOP, kind="late_delivery", opened_at=now - timedelta(days=1))
    ret = seed_incident(services, SHOP, kind="return", apologised=False, opened_at=now - timedelta(days=3))
    broken = seed_incident(services, SHOP, kind="refund", needs_attention="SMTP 550", opened_at=now)
    with services.db.session() as session:
        incident = session.get(Incident, late.incident_id)
        incident.resolved_at = now
        incident.state = "resolved"
        incident.open_key = None

    assert ids(admin_api.get("/api/incidents?kind=return")) == [ret.incident_id]
    assert ids(admin_api.get("/api/incidents?state=detected")) == [ret.incident_id]
    assert ids(admin_api.get("/api/incidents?state=resolved")) == [late.incident_id]
    assert ids(admin_api.get("/api/incidents?state=open")) == [broken.incident_id, ret.incident_id]
    assert ids(admin_api.get("/api/incidents?state=needs_attention")) == [broken.incident_id]
    two_days_ago = (now - timedelta(days=2)).date().isoformat()
    assert ids(admin_api.get(f"/api/incidents?since={two_days_ago}")) == [
        broken.incident_id,
        late.incident_id,
    ]
    assert ids(admin_api.get(f"/api/incidents?until={two_days_ago}")) == [ret.incident_id]
    day = (now - timedelta(days=3)).date().isoformat()
    assert ids(admin_api.get(f"/api/incidents?since={day}&until={day}")) == [ret.incident_id]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("#1042", ["#1042"]),
        ("1042", ["#1042"]),
        ("GRACE", ["#1043"]),  # first name, any case
        ("hopper@", ["#1043"]),  # email
        ("%", []),  # LIKE wildcards are text, not patterns
        ("_", []),
        ("  ", ["#1043", "#1042"]),  # blank: no search
    ],
)
def test_search_by_order_name_and_customer(admin_api, services, q, expected):
    seed_incident(services, SHOP, order_name="#1042", first_name="Ada", email="ada@example.test")
    seed_incident(services, SHOP, order_name="#1043", first_name="Grace", email="grace.hopper@example.test")
    make_shop(services, OTHER_SHOP, name="Other Store")
    seed_incident(services, OTHER_SHOP, order_name="#1042")  # another shop's order
    response = admin_api.get("/api/incidents", query_string={"q": q})
    assert [i["order_name"] for i in response.get_json()["items"]] == expected


def test_cursor_pages_cover_every_incident_once(admin_api, services):
    same_moment = utcnow() - timedelta(hours=1)
    seeded = [
        seed_incident(services, SHOP, order_name=f"#{2000 + i}", opened_at=same_moment) for i in range(3)
    ]
    seeded += [seed_incident(services, SHOP, order_name=f"#{3000 + i}") for i in range(2)]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        query: dict[str, Any] = {"limit": 2}
        if cursor:
            query["cursor"] = cursor
        body = admin_api.get("/api/incidents", query_string=query).get_json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            break
        # A new incident arriving between pages does not shift what follows.
        if pages == 1:
            seed_incident(services, SHOP, order_name="#9999")
    assert pages == 3
    assert sorted(seen) == sorted(s.incident_id for s in seeded)
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"kind": "lost_parcel"}, "kind"),
        ({"state": "sad"}, "state"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-05-02", "until": "2026-05-01"}, "until"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "WzEsMiwzXQ"}, "cursor"),  # valid base64 JSON of the wrong shape
        ({"q": "a" * 201}, "q"),
        ({"q": "nul\x00byte"}, "q"),
    ],
)
def test_invalid_parameters_are_422_with_the_field(admin_api, query, field):
    response = admin_api.get("/api/incidents", query_string=query)
    assert response.status_code == 422
    assert field in response.get_json()["fields"]


def test_detail_has_the_whole_story(admin_api, services):
    seeded = seed_incident(services, SHOP, order_name="#1050", code="SORRY-7KXF")
    body = admin_api.get(f"/api/incidents/{seeded.incident_id}").get_json()
    assert body["order_name"] == "#1050"
    assert [entry["event"] for entry in body["timeline"]] == ["detected", "email_sent"]
    assert body["timeline"][0]["source"] == "webhook:fulfillment_events/create"
    (message,) = body["messages"]
    assert message["kind"] == "apology" and message["state"] == "sent"
    assert "SORRY-7KXF" in message["html_body"] and "SORRY-7KXF" in message["text_body"]
    assert body["code"]["code"] == "SORRY-7KXF" and body["code"]["redeemed"] is False
    assert body["code"]["value"] == "10.0000"
    assert body["task"]["status"] == "open" and body["task"]["overdue"] is False
    assert body["order_url"] == f"https://admin.shopify.com/store/calm-coffee/orders/{body['order_id']}"


@pytest.mark.parametrize("incident_id", ["999999", str(2**31), str(10**30)])
def test_unknown_incident_is_404(admin_api, services, incident_id):
    for method, path in (
        ("GET", f"/api/incidents/{incident_id}"),
        ("POST", f"/api/incidents/{incident_id}/resolve"),
        ("POST", f"/api/incidents/{incident_id}/retry"),
    ):
        response = admin_api.request(method, path)
        assert response.status_code == 404, (method, path)
        assert response.get_json()["error"] == "not_found"


def test_another_shops_incident_is_404_and_never_listed(admin_api, services):
    make_shop(services, OTHER_SHOP, name="Other Store")
    theirs = seed_incident(services, OTHER_SHOP, order_name="#7777", needs_attention="SMTP 550")
    for method, path in (
        ("GET", f"/api/incidents/{theirs.incident_id}"),
        ("POST", f"/api/incidents/{theirs.incident_id}/resolve"),
        ("POST", f"/api/incidents/{theirs.incident_id}/retry"),
    ):
        assert admin_api.request(method, path).status_code == 404
    assert admin_api.get("/api/incidents").get_json()["items"] == []
    with services.db.session() as session:
        incident = session.get(Incident, theirs.incident_id)
        assert incident.resolved_at is None and incident.needs_attention == "SMTP 550"


# --- resolve and retry, with the jobs they start kept in a real Redis queue ---------------


def jobs(queue: Queue) -> list[tuple[str, tuple[Any, ...]]]:
    return [(job.func_name, tuple(job.args)) for job in queue.jobs]


def test_resolve_closes_the_task_and_sends_the_fixed_notice(admin_api_queued):
    api, services, queue = admin_api_queued, admin_api_queued.services, admin_api_queued.queue
    seeded = seed_incident(services, SHOP)
    response = api.post(f"/api/incidents/{seeded.incident_id}/resolve")
    assert response.status_code == 200
    body = response.get_json()
    assert body["state"] == "resolved" and body["is_open"] is False
    assert body["task"]["status"] == "done" and body["task"]["closed_by"] == "staff"
    assert [e["event"] for e in body["timeline"]][-2:] == ["task_closed", "resolved"]
    assert jobs(queue) == [("actions.notify.notify_resolved", (seeded.incident_id,))]

    again = api.post(f"/api/incidents/{seeded.incident_id}/resolve")
    assert again.status_code == 409
    assert len(queue.jobs) == 1


def test_retry_restarts_the_unfinished_steps(admin_api_queued):
    api = admin_api_queued
    services, queue = api.services, api.queue
    seeded = seed_incident(services, SHOP, needs_attention="SMTP 550: mailbox unavailable", task=False)
    with services.db.session() as session:
        apology = session.scalar(select(Message).where(Message.incident_id == seeded.incident_id))
        apology.state = "failed"
        apology.error = "SMTP 550: mailbox unavailable"
    response = api.post(f"/api/incidents/{seeded.incident_id}/retry")
    assert response.status_code == 202
    body = response.get_json()
    assert body["enqueued"] == ["actions.apology.send_apology", "actions.follow_up.open_follow_up"]
    assert body["incident"]["needs_attention"] is None
    retried = body["incident"]["timeline"][-1]
    assert retried["event"] == "retried" and "SMTP 550" in retried["summary"]
    assert jobs(queue) == [
        ("actions.apology.send_apology", (seeded.incident_id,)),
        ("actions.follow_up.open_follow_up", (seeded.incident_id,)),
    ]
    # Cleared: a second click has nothing to retry.
    assert api.post(f"/api/incidents/{seeded.incident_id}/retry").status_code == 409


def test_retry_after_resolution_resends_the_fixed_notice(admin_api_queued):
    api = admin_api_queued
    services, queue = api.services, api.queue
    seeded = seed_incident(services, SHOP, needs_attention="fixed notice: SMTP 554")
    with services.db.session() as session:
        incident = session.get(Incident, seeded.incident_id)
        incident.resolved_at = utcnow()
        incident.state = "resolved"
        session.get(Task, seeded.task_id).status = "done"
    response = api.post(f"/api/incidents/{seeded.incident_id}/retry")
    assert response.status_code == 202
    assert response.get_json()["enqueued"] == ["actions.notify.notify_resolved"]
    assert jobs(queue) == [("actions.notify.notify_resolved", (seeded.incident_id,))]


def test_retry_without_anything_flagged_is_409(admin_api_queued):
    api = admin_api_queued
    services, queue = api.services, api.queue
    seeded = seed_incident(services, SHOP)
    response = api.post(f"/api/incidents/{seeded.incident_id}/retry")
    assert response.status_code == 409
    assert queue.jobs == []
    with services.db.session() as session:
        events = session.scalars(
            select(TimelineEntry.event).where(TimelineEntry.incident_id == seeded.incident_id)
        ).all()
    assert "retried" not in events
