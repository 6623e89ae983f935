# ruff: noqa: F401, F811 - pytest fixtures imported from tests.actions_support
"""The incident sweep: a step whose job was lost is enqueued again; nothing done twice."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from actions.apology import send_apology
from actions.follow_up import open_follow_up
from actions.incident_sweep import sweep, sweep_incidents
from actions.notify import notify_resolved
from plugin import budget
from plugin.db import utcnow
from plugin.models import Message
from plugin.periodic import SCHEDULE
from plugin.worker import run_worker
from tests.actions_support import (
    admin,
    incident,
    mail_app,
    mail_services,
    make_incident,
    queued,
    set_settings,
    shop_id,
    summary_of,
    update_incident,
    update_shop,
)
from tests.factories import SHOP

pytestmark = pytest.mark.redis


def test_lost_apology_task_and_notice_are_found_and_finished_once(mail_services, admin, shop_id, smtp_server):
    old = utcnow() - timedelta(minutes=30)
    lost = make_incident(mail_services, shop_id, opened_at=old)  # its jobs were never run
    done = make_incident(mail_services, shop_id, opened_at=old, customer_id=2, email="d@example.test")
    send_apology(done)
    open_follow_up(done)
    fresh = make_incident(
        mail_services, shop_id, customer_id=3, email="f@example.test"
    )  # its jobs may still come

    report = sweep(mail_services)
    assert report.apologies == [lost] and report.follow_ups == [lost] and report.notices == []
    run_worker(mail_services, burst=True)
    assert sorted(m["To"] for m in smtp_server.wait_for(2)) == ["d@example.test", "jane@example.test"]

    # Resolved (after its apology), and the notice's job lost too.
    with mail_services.db.session() as session:
        for message in session.scalars(select(Message).where(Message.incident_id == lost)):
            message.created_at = message.sent_at = utcnow() - timedelta(minutes=25)
    update_incident(mail_services, lost, resolved_at=utcnow() - timedelta(minutes=20), resolved_by="webhook")
    report = sweep(mail_services)
    assert report.notices == [lost] and report.apologies == [] and report.follow_ups == []
    run_worker(mail_services, burst=True)
    assert len(smtp_server.wait_for(3)) == 3
    assert sweep(mail_services).notices == []
    assert len(admin.discount_mutations) == 2
    assert fresh not in report.apologies


def test_a_delayed_apology_is_not_due_before_its_delay(mail_services, admin, shop_id):
    set_settings(mail_services, shop_id, {"late_delivery": {"delay_minutes": 60}})
    waiting = make_incident(mail_services, shop_id, opened_at=utcnow() - timedelta(minutes=30))
    overdue = make_incident(mail_services, shop_id, opened_at=utcnow() - timedelta(minutes=80), customer_id=9)
    assert sweep(mail_services).apologies == [overdue]
    assert waiting


def test_an_apology_still_not_out_after_a_day_goes_to_a_person(mail_services, admin, shop_id):
    stuck = make_incident(mail_services, shop_id, opened_at=utcnow() - timedelta(hours=30))
    report = sweep(mail_services)
    assert report.given_up == [stuck] and report.apologies == []
    assert "24 hours" in incident(mail_services, stuck).needs_attention
    assert sweep(mail_services).given_up == []  # once is enough


def test_incidents_needing_attention_or_of_uninstalled_shops_are_left_alone(mail_services, admin, shop_id):
    old = utcnow() - timedelta(minutes=30)
    flagged = make_incident(mail_services, shop_id, opened_at=old)
    update_incident(mail_services, flagged, needs_attention="Shopify refused the code")
    context_pending = make_incident(
        mail_services, shop_id, opened_at=old, customer_id=4, missing=["order_context"]
    )
    report = sweep(mail_services)
    assert flagged not in report.apologies and context_pending not in report.apologies
    update_shop(mail_services, shop_id, uninstalled_at=utcnow())
    report = sweep(mail_services)
    assert report.apologies == report.follow_ups == report.notices == []


def test_the_sweep_is_periodic(mail_services):
    assert SCHEDULE["actions.incident_sweep.sweep_incidents"] == 60
    sweep_incidents()
    assert (
        "actions.incident_sweep.sweep_incidents",
        (),
        "periodic-actions-incident_sweep-sweep_incidents",
    ) in queued(mail_services)


def test_sweep_seconds_set_how_late_a_step_is_lost(mail_services, admin, shop_id):
    # Two sweep intervals late is lost: 2 minutes by default, 12 s at SWEEP_SECONDS=6.
    lost = make_incident(mail_services, shop_id, opened_at=utcnow() - timedelta(seconds=90))
    assert sweep(mail_services).apologies == []
    quick = replace(mail_services, config=mail_services.config.with_overrides(sweep_seconds=6))
    assert sweep(quick).apologies == [lost]


def test_a_late_step_whose_job_is_still_waiting_is_not_enqueued_again(mail_services, admin, shop_id):
    """In a backlog a step is late because its job waits its turn: enqueueing it again would
    run it twice. Once no job of its own waits, the late step is lost and enqueued."""
    old = utcnow() - timedelta(minutes=30)
    queued_first = make_incident(mail_services, shop_id, opened_at=old)
    retrying = make_incident(mail_services, shop_id, opened_at=old, customer_id=8)
    lost = make_incident(mail_services, shop_id, opened_at=old, customer_id=9)
    mail_services.queue.enqueue(
        "actions.first_response.first_response", queued_first, job_id=f"first-{queued_first}"
    )
    mail_services.queue.enqueue(
        "actions.apology.send_apology", retrying, job_id=f"apology-{retrying}", delay=timedelta(minutes=5)
    )

    report = sweep(mail_services)
    assert report.apologies == [lost]
    assert report.follow_ups == [retrying, lost]  # its apology's retry does not open the task

    run_worker(mail_services, burst=True)  # the queued jobs run (the scheduled retry stays)
    assert sweep(mail_services).apologies == []
    assert incident(mail_services, queued_first).needs_attention is None


def test_an_order_tag_put_off_in_a_storm_and_lost_is_added(mail_services, admin, shop_id, smtp_server):
    old = utcnow() - timedelta(minutes=30)
    first = make_incident(mail_services, shop_id, opened_at=old)
    second = make_incident(mail_services, shop_id, opened_at=old, customer_id=6)
    budget.observe(mail_services, SHOP, available=300.0, maximum=2000.0, restore_rate=100.0)  # a storm
    open_follow_up(first)
    open_follow_up(second)
    assert {job[2] for job in queued(mail_services)} == {f"tag-{first}", f"tag-{second}"}
    mail_services.queue.rq.empty()  # Redis lost them
    later = utcnow() + timedelta(minutes=3)

    set_settings(mail_services, shop_id, {"shop": {"tag_orders": False}})
    assert sweep(mail_services, now=later).tags == []  # no longer wanted: left alone
    set_settings(mail_services, shop_id, {"shop": {"tag_orders": True}})
    assert sweep(mail_services, now=later).tags == [first, second]
    assert sweep(mail_services, now=later).tags == []  # their jobs wait now: not twice

    run_worker(mail_services, burst=True)
    assert admin.tags[incident(mail_services, first).order_id] == {"amends"}
    assert admin.tags[incident(mail_services, second).order_id] == {"amends"}
    assert sweep(mail_services, now=later).tags == []
