# ruff: noqa: F401, F811 - pytest fixtures imported from tests.actions_support
"""open_follow_up: one task per incident, the order tagged in Shopify, staff told."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from actions.apology import retry
from actions.follow_up import TAG_LATER, open_follow_up, send_staff_digest
from plugin import budget
from plugin.db import utcnow
from plugin.errors import ShopifyRetryableError
from plugin.models import Message, Shop, Task
from plugin.models.task import DONE, OPEN
from plugin.worker import run_worker
from tests.actions_support import (
    admin,
    events,
    html_of,
    incident,
    mail_app,
    mail_services,
    make_incident,
    queued,
    set_settings,
    shop_id,
    summary_of,
    task_of,
    text_of,
    update_shop,
)

pytestmark = pytest.mark.redis


def test_a_task_with_its_due_time_and_the_order_tagged(mail_services, admin, shop_id, smtp_server):
    set_settings(
        mail_services, shop_id, {"return": {"sla_hours": 48}, "shop": {"order_tag": "amends-return"}}
    )
    opened = utcnow() - timedelta(hours=1)
    incident_id = make_incident(mail_services, shop_id, "return", order_name="#1077", opened_at=opened)

    open_follow_up(incident_id)

    task = task_of(mail_services, incident_id)
    assert task.status == OPEN and task.title == "Return: order #1077 (Jane)"
    assert abs((task.due_at - (opened + timedelta(hours=48))).total_seconds()) < 1
    [tag] = admin.of("tagsAdd")
    order_id = incident(mail_services, incident_id).order_id
    assert tag.variables == {"id": f"gid://shopify/Order/{order_id}", "tags": ["amends-return"]}
    assert admin.tags[order_id] == {"amends-return"}
    assert task_of(mail_services, incident_id).order_tagged_at is not None
    assert events(mail_services, incident_id)[-2:] == ["task_opened", "order_tagged"]
    assert "48 h" in summary_of(mail_services, incident_id, "task_opened")
    assert smtp_server.wait_for(1, timeout=0.3) == []  # staff notifications are off by default


def test_running_it_again_changes_nothing(mail_services, admin, shop_id):
    incident_id = make_incident(mail_services, shop_id)
    open_follow_up(incident_id)
    open_follow_up(incident_id)
    with mail_services.db.session() as session:
        assert len(session.scalars(select(Task).where(Task.incident_id == incident_id)).all()) == 1
    assert len(admin.of("tagsAdd")) == 1
    assert events(mail_services, incident_id).count("task_opened") == 1


def shop_domain(services, shop_id: int) -> str:
    with services.db.session() as session:
        shop = session.get(Shop, shop_id)
        assert shop is not None
        return shop.domain


def test_in_a_storm_the_tag_waits_behind_the_apologies(mail_services, admin, shop_id):
    """With the shop's bucket under a quarter full, the tag (10 points, another customer's code)
    goes to the back of the queue; it is done when its turn comes, whatever the budget."""
    incident_id = make_incident(mail_services, shop_id)
    domain = shop_domain(mail_services, shop_id)
    budget.drain(mail_services, domain, available=300.0, restore_rate=100.0)
    budget.observe(mail_services, domain, available=300.0, maximum=2000.0, restore_rate=100.0)
    mail_services.queue.enqueue("actions.first_response.first_response", 999_999, job_id="first-999999")

    open_follow_up(incident_id)
    open_follow_up(incident_id)  # a retry while the tag waits queues it once

    assert task_of(mail_services, incident_id).order_tagged_at is None
    assert admin.of("tagsAdd") == []
    assert [job for job in queued(mail_services) if job[0] == TAG_LATER] == [
        (TAG_LATER, (incident_id,), f"tag-{incident_id}")
    ]
    assert events(mail_services, incident_id).count("order_tag_deferred") == 1
    assert "budget is short" in summary_of(mail_services, incident_id, "order_tag_deferred")

    budget.drain(mail_services, domain, available=0.0, restore_rate=100.0)  # still a storm
    run_worker(mail_services, burst=True)
    [tag] = admin.of("tagsAdd")
    assert tag.variables["tags"] == ["amends"]
    assert task_of(mail_services, incident_id).order_tagged_at is not None


def test_with_the_bucket_a_quarter_full_or_more_the_tag_is_added_at_once(mail_services, admin, shop_id):
    incident_id = make_incident(mail_services, shop_id)
    domain = shop_domain(mail_services, shop_id)
    budget.observe(mail_services, domain, available=600.0, maximum=2000.0, restore_rate=100.0)
    open_follow_up(incident_id)
    assert len(admin.of("tagsAdd")) == 1
    assert "order_tag_deferred" not in events(mail_services, incident_id)


def test_tagging_can_be_turned_off(mail_services, admin, shop_id):
    set_settings(mail_services, shop_id, {"shop": {"tag_orders": False}})
    incident_id = make_incident(mail_services, shop_id)
    open_follow_up(incident_id)
    assert task_of(mail_services, incident_id) is not None
    assert admin.calls == []


def test_test_mode_opens_the_task_but_writes_nothing_to_the_shop(mail_services, admin, shop_id):
    update_shop(mail_services, shop_id, test_mode=True)
    incident_id = make_incident(mail_services, shop_id)
    open_follow_up(incident_id)
    open_follow_up(incident_id)
    assert task_of(mail_services, incident_id) is not None
    assert admin.calls == []
    assert events(mail_services, incident_id).count("order_tag_skipped") == 1
    assert summary_of(mail_services, incident_id, "order_tag_skipped").startswith("Test mode")


def test_a_tag_outage_is_retried_and_a_refusal_needs_attention(mail_services, admin, shop_id):
    passing = make_incident(mail_services, shop_id)
    admin.fail_next("tagsAdd", admin.server_error(502, retry_after="30"))
    with pytest.raises(ShopifyRetryableError):
        open_follow_up(passing)
    assert task_of(mail_services, passing) is not None  # the task is there already
    assert "502" in summary_of(mail_services, passing, "order_tag_deferred")
    open_follow_up(passing)  # the queue's retry
    assert task_of(mail_services, passing).order_tagged_at is not None
    assert len(admin.of("tagsAdd")) == 2

    refused = make_incident(mail_services, shop_id, customer_id=5)
    admin.fail_next(
        "tagsAdd",
        (
            200,
            {},
            {
                "data": {
                    "tagsAdd": {
                        "node": None,
                        "userErrors": [{"field": ["id"], "message": "Order does not exist"}],
                    }
                }
            },
        ),
    )
    open_follow_up(refused)
    assert "Order does not exist" in incident(mail_services, refused).needs_attention
    retry(refused)
    run_worker(mail_services, burst=True)
    assert task_of(mail_services, refused).order_tagged_at is not None


def test_an_incident_resolved_before_its_task_gets_a_done_task(mail_services, admin, shop_id):
    incident_id = make_incident(mail_services, shop_id, "refund", resolved=True)
    open_follow_up(incident_id)
    task = task_of(mail_services, incident_id)
    assert task.status == DONE and task.closed_at is not None
    assert "already resolved" in summary_of(mail_services, incident_id, "task_opened")


def test_staff_get_an_email_per_task_with_the_order_link(mail_services, admin, shop_id, smtp_server):
    set_settings(
        mail_services,
        shop_id,
        {"shop": {"staff_notifications": "each", "staff_address": "team@calm-coffee.example"}},
    )
    incident_id = make_incident(mail_services, shop_id, order_name="#1313", first_name="<b>Jo</b>")
    open_follow_up(incident_id)
    open_follow_up(incident_id)
    [email] = smtp_server.wait_for(2, timeout=0.5)
    order_id = incident(mail_services, incident_id).order_id
    assert email["To"] == "team@calm-coffee.example"
    assert email["Message-ID"] == f"<task-{incident_id}@amends.example.test>"
    assert "#1313" in email["Subject"]
    link = f"https://admin.shopify.com/store/calm-coffee/orders/{order_id}"
    assert link in text_of(email) and link in html_of(email)
    assert "&lt;b&gt;Jo&lt;/b&gt;" in html_of(email) and "<b>Jo</b>" not in html_of(email)
    assert "Detected." in text_of(email)  # the timeline so far
    assert "staff_notified" in events(mail_services, incident_id)


def test_staff_email_falls_back_to_the_store_address(mail_services, admin, shop_id, smtp_server):
    set_settings(mail_services, shop_id, {"shop": {"staff_notifications": "each"}})
    open_follow_up(make_incident(mail_services, shop_id))
    assert [m["To"] for m in smtp_server.wait_for(1)] == ["hello@calm-coffee.example"]


def test_a_daily_digest_lists_the_new_tasks_once_a_day(mail_services, admin, shop_id, smtp_server):
    set_settings(mail_services, shop_id, {"shop": {"staff_notifications": "digest"}})
    first = make_incident(mail_services, shop_id, order_name="#2001")
    second = make_incident(mail_services, shop_id, "refund", order_name="#2002", customer_id=2)
    open_follow_up(first)
    open_follow_up(second)
    assert smtp_server.wait_for(1, timeout=0.3) == []  # no email per task

    now = utcnow() + timedelta(minutes=1)
    assert send_staff_digest(mail_services, shop_id, now=now) is not None
    assert send_staff_digest(mail_services, shop_id, now=now + timedelta(hours=2)) is None  # not a day yet
    [digest] = smtp_server.wait_for(1)
    assert "2 new follow-up tasks" in digest["Subject"]
    assert "#2001" in text_of(digest) and "#2002" in text_of(digest)

    # A day later with nothing new: no empty digest.
    assert send_staff_digest(mail_services, shop_id, now=now + timedelta(hours=25)) is None
    with mail_services.db.session() as session:
        assert len(session.scalars(select(Message).where(Message.kind == "digest")).all()) == 1


def test_a_kind_set_to_resolve_at_once_closes_its_task_and_gets_no_fixed_email(
    mail_services, admin, shop_id, smtp_server
):
    from actions.apology import send_apology
    from actions.notify import notify_resolved
    from tests.actions_support import queued

    set_settings(mail_services, shop_id, {"refund": {"auto_resolve": True}})
    incident_id = make_incident(mail_services, shop_id, "refund")
    open_follow_up(incident_id)
    send_apology(incident_id)
    found = incident(mail_services, incident_id)
    assert found.resolved_by == "auto_resolve" and found.open_key is None
    assert task_of(mail_services, incident_id).status == DONE
    assert ("actions.notify.notify_resolved", (incident_id,), f"notify-{incident_id}") in queued(
        mail_services
    )
    notify_resolved(incident_id)
    [apology] = smtp_server.wait_for(2, timeout=0.5)
    assert apology["Message-ID"].startswith("<apology-")
    assert "automatically" in summary_of(mail_services, incident_id, "fixed_skipped")
