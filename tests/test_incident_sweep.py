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
    assert SCHEDULE["actions.incident_sweep.sweep_incidents"] == 300
    sweep_incidents()
    assert (
        "actions.incident_sweep.sweep_incidents",
        (),
        "periodic-actions-incident_sweep-sweep_incidents",
    ) in queued(mail_services)


def test_sweep_seconds_set_how_late_a_step_is_lost(mail_services, admin, shop_id):
    # Ten sweep intervals late is lost: 10 minutes by default, 1 minute at SWEEP_SECONDS=6.
    lost = make_incident(mail_services, shop_id, opened_at=utcnow() - timedelta(minutes=2))
    assert sweep(mail_services).apologies == []
    quick = replace(mail_services, config=mail_services.config.with_overrides(sweep_seconds=6))
    assert sweep(quick).apologies == [lost]
