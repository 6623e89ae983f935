"""/api/tasks: the board's columns, updates (assignee, notes, due time) and closing a task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from plugin.db import utcnow
from plugin.models import Incident, Task, TimelineEntry
from tests.admin_data import seed_incident
from tests.factories import OTHER_SHOP, SHOP, make_shop


def orders(response: Any) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [item["incident"]["order_name"] for item in response.get_json()["items"]]


@pytest.fixture
def board(admin_api, services):
    """Two open (one due later, one with no due time), one overdue, one done."""
    seed_incident(services, SHOP, order_name="#1 later", due_in=timedelta(hours=30))
    seed_incident(services, SHOP, order_name="#2 soon", due_in=timedelta(hours=2))
    seed_incident(services, SHOP, order_name="#3 undated", due_in=None)
    seed_incident(services, SHOP, order_name="#4 overdue", due_in=timedelta(hours=-1))
    done = seed_incident(services, SHOP, order_name="#5 done")
    with services.db.session() as session:
        task = session.get(Task, done.task_id)
        task.status = "done"
        task.closed_at = utcnow()
    return admin_api


def test_columns_partition_the_board(board):
    assert orders(board.get("/api/tasks?status=overdue")) == ["#4 overdue"]
    assert orders(board.get("/api/tasks?status=open")) == ["#2 soon", "#1 later", "#3 undated"]
    assert orders(board.get("/api/tasks?status=done")) == ["#5 done"]
    everything = board.get("/api/tasks").get_json()["items"]
    assert [t["incident"]["order_name"] for t in everything] == [
        "#4 overdue",
        "#2 soon",
        "#1 later",
        "#3 undated",
        "#5 done",
    ]
    overdue = everything[0]
    assert overdue["overdue"] is True and overdue["status"] == "open"
    assert overdue["incident"]["kind"] == "late_delivery"


def test_pages_through_a_column(board):
    first = board.get("/api/tasks?status=open&limit=2").get_json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = board.get(
        "/api/tasks", query_string={"status": "open", "limit": 2, "cursor": first["next_cursor"]}
    )
    assert orders(second) == ["#3 undated"]
    assert second.get_json()["next_cursor"] is None


@pytest.mark.parametrize("query", ["status=late", "limit=0", "cursor=%%%"])
def test_bad_parameters_are_422(board, query):
    assert board.get(f"/api/tasks?{query}").status_code == 422


def test_update_sets_and_clears_fields_and_tells_the_timeline(admin_api, services):
    seeded = seed_incident(services, SHOP)
    due = datetime(2030, 1, 2, 15, 30, tzinfo=UTC)
    response = admin_api.patch(
        f"/api/tasks/{seeded.task_id}",
        json={"assignee": "  Grace  ", "notes": "Called the carrier.", "due_at": "2030-01-02T16:30:00+01:00"},
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["assignee"] == "Grace" and body["notes"] == "Called the carrier."
    assert datetime.fromisoformat(body["due_at"]) == due
    with services.db.session() as session:
        task = session.get(Task, seeded.task_id)
        assert (task.assignee, task.notes, task.due_at) == ("Grace", "Called the carrier.", due)
        entry = session.scalars(
            select(TimelineEntry)
            .where(TimelineEntry.incident_id == seeded.incident_id)
            .order_by(TimelineEntry.id.desc())
        ).first()
        assert entry.event == "task_updated" and entry.source == "staff"
        assert "assigned to Grace" in entry.summary and "2030-01-02 15:30 UTC" in entry.summary

    # Only what is sent changes; null clears.
    cleared = admin_api.patch(f"/api/tasks/{seeded.task_id}", json={"assignee": None}).get_json()
    assert cleared["assignee"] is None and cleared["notes"] == "Called the carrier."


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"due_at": "2030-01-02T16:30:00"}, "due_at"),  # no time zone
        ({"due_at": "next week"}, "due_at"),
        ({"due_at": 0}, "due_at"),  # not a Unix time either
        ({"assignee": "x" * 256}, "assignee"),
        ({"notes": 12}, "notes"),
        ({"status": "done"}, "status"),  # closing is its own action
        ({"notes": "nul\x00"}, "notes"),
    ],
)
def test_invalid_updates_are_422_and_change_nothing(admin_api, services, body, field):
    seeded = seed_incident(services, SHOP)
    response = admin_api.patch(f"/api/tasks/{seeded.task_id}", json=body)
    assert response.status_code == 422
    assert field in response.get_json()["fields"]
    with services.db.session() as session:
        task = session.get(Task, seeded.task_id)
        assert task.assignee is None and task.notes is None and task.status == "open"


@pytest.mark.parametrize(
    "send",
    [
        {"data": "not json", "content_type": "application/json"},
        {"data": "assignee=Grace", "content_type": "application/x-www-form-urlencoded"},
        {"json": ["assignee", "Grace"]},
    ],
)
def test_a_body_that_is_not_a_json_object_is_422(admin_api, services, send):
    seeded = seed_incident(services, SHOP)
    response = admin_api.patch(f"/api/tasks/{seeded.task_id}", **send)
    assert response.status_code == 422
    assert response.get_json()["fields"] == {"body": "must be a JSON object"}


def test_another_shops_task_is_404(admin_api, services):
    make_shop(services, OTHER_SHOP, name="Other Store")
    theirs = seed_incident(services, OTHER_SHOP)
    assert admin_api.patch(f"/api/tasks/{theirs.task_id}", json={"assignee": "Mallory"}).status_code == 404
    assert admin_api.post(f"/api/tasks/{theirs.task_id}/resolve").status_code == 404
    assert admin_api.get("/api/tasks").get_json()["items"] == []
    with services.db.session() as session:
        task = session.get(Task, theirs.task_id)
        assert task.assignee is None and task.status == "open"


@pytest.mark.parametrize("task_id", ["424242", str(2**40)])
def test_unknown_task_is_404(admin_api, task_id):
    assert admin_api.patch(f"/api/tasks/{task_id}", json={}).status_code == 404
    assert admin_api.post(f"/api/tasks/{task_id}/resolve").status_code == 404


def test_closing_a_task_resolves_its_incident_and_queues_the_fixed_notice(admin_api_queued):
    api = admin_api_queued
    services, queue = api.services, api.queue
    seeded = seed_incident(services, SHOP)
    response = api.post(f"/api/tasks/{seeded.task_id}/resolve")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "done" and body["closed_by"] == "staff" and body["closed_at"]
    assert body["incident"]["state"] == "resolved" and body["incident"]["is_open"] is False
    with services.db.session() as session:
        incident = session.get(Incident, seeded.incident_id)
        assert incident.resolved_by == "staff" and incident.open_key is None
    assert [(job.func_name, job.args) for job in queue.jobs] == [
        ("actions.notify.notify_resolved", [seeded.incident_id])
    ]

    assert api.post(f"/api/tasks/{seeded.task_id}/resolve").status_code == 409
    assert len(queue.jobs) == 1
