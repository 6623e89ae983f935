# ruff: noqa: F401, F811 - pytest fixtures imported from tests.actions_support
"""notify_resolved: the "it's fixed" email, once, after the apology, reminding of an unused code."""

from __future__ import annotations

from datetime import timedelta

import pytest

from actions.apology import send_apology
from actions.notify import notify_resolved
from plugin import codes
from plugin.db import utcnow
from plugin.errors import MailRetryableError
from plugin.incidents import resolve
from plugin.models import DiscountCode, Incident
from plugin.models.incident import CUSTOMER_TOLD
from plugin.models.message import SENT, SKIPPED
from tests.actions_support import (
    admin,
    events,
    html_of,
    incident,
    mail_app,
    mail_services,
    make_incident,
    messages,
    queued,
    set_settings,
    shop_id,
    summary_of,
    text_of,
    update_incident,
    update_shop,
)

pytestmark = pytest.mark.redis

SECRET = "test-secret-key-0123456789abcdef0123456789"


def resolve_now(services, incident_id: int, cause: str = "webhook:fulfillment_events/create") -> None:
    with services.db.session() as session:
        found = session.get(Incident, incident_id)
        resolve(session, services, found, cause=cause, summary="Delivered.")


def test_the_fixed_email_follows_the_apology_and_reminds_of_the_code(
    mail_services, admin, shop_id, smtp_server
):
    incident_id = make_incident(mail_services, shop_id, order_name="#1500")
    send_apology(incident_id)
    resolve_now(mail_services, incident_id)
    assert ("actions.notify.notify_resolved", (incident_id,), f"notify-{incident_id}") in queued(
        mail_services
    )

    notify_resolved(incident_id)
    notify_resolved(incident_id)

    _apology, fixed = smtp_server.wait_for(3, timeout=0.5)
    apology_id = f"<apology-{incident_id}@amends.example.test>"
    assert fixed["Message-ID"] == f"<fixed-{incident_id}@amends.example.test>"
    assert fixed["In-Reply-To"] == apology_id and fixed["References"] == apology_id
    assert fixed["To"] == "jane@example.test" and "#1500" in fixed["Subject"]
    code = codes.derive(SECRET, incident_id)
    assert code in text_of(fixed) and "still waiting for you" in text_of(fixed)
    assert code in html_of(fixed)
    assert incident(mail_services, incident_id).state == CUSTOMER_TOLD
    assert "unused code" in summary_of(mail_services, incident_id, "fixed_sent")
    assert len(admin.discount_mutations) == 1


def test_a_used_code_is_not_pushed_again(mail_services, admin, shop_id, smtp_server):
    incident_id = make_incident(mail_services, shop_id)
    send_apology(incident_id)
    with mail_services.db.session() as session:
        row = session.query(DiscountCode).filter_by(incident_id=incident_id).one()
        row.redeemed_at = utcnow()
    resolve_now(mail_services, incident_id)
    notify_resolved(incident_id)
    fixed = smtp_server.wait_for(2)[1]
    assert codes.derive(SECRET, incident_id) not in text_of(fixed)
    assert "has been delivered" in text_of(fixed)


def test_nothing_before_the_incident_resolves(mail_services, admin, shop_id, smtp_server):
    incident_id = make_incident(mail_services, shop_id)
    send_apology(incident_id)
    notify_resolved(incident_id)
    assert len(smtp_server.wait_for(2, timeout=0.5)) == 1
    assert "fixed" not in messages(mail_services, incident_id)


def test_it_waits_for_an_apology_still_on_its_way(mail_services, admin, shop_id, smtp_server):
    incident_id = make_incident(mail_services, shop_id)
    smtp_server.fail_next("451 try later")
    with pytest.raises(MailRetryableError):
        send_apology(incident_id)
    resolve_now(mail_services, incident_id)
    notify_resolved(incident_id)  # the apology is not out yet: nothing decided
    assert "fixed" not in messages(mail_services, incident_id)

    send_apology(incident_id)  # the apology goes out and hands over to the notice
    assert [job for job in queued(mail_services) if job[0] == "actions.notify.notify_resolved"]
    notify_resolved(incident_id)
    assert [m["Message-ID"].split("-")[0] for m in smtp_server.wait_for(2)] == ["<apology", "<fixed"]


def test_no_apology_means_no_fixed_email(mail_services, admin, shop_id, smtp_server):
    incident_id = make_incident(mail_services, shop_id, email=None, missing=["email"])
    send_apology(incident_id)
    resolve_now(mail_services, incident_id)
    notify_resolved(incident_id)
    assert smtp_server.wait_for(1, timeout=0.3) == []
    assert messages(mail_services, incident_id)["fixed"].state == SKIPPED
    assert "No apology went out" in summary_of(mail_services, incident_id, "fixed_skipped")


def test_the_notice_can_be_turned_off_per_kind(mail_services, admin, shop_id, smtp_server):
    set_settings(mail_services, shop_id, {"late_delivery": {"notify_resolved": False}})
    incident_id = make_incident(mail_services, shop_id)
    send_apology(incident_id)
    resolve_now(mail_services, incident_id)
    notify_resolved(incident_id)
    assert len(smtp_server.wait_for(2, timeout=0.5)) == 1
    assert "turned off" in summary_of(mail_services, incident_id, "fixed_skipped")


def test_a_refund_resolved_at_once_gets_its_apology_but_no_fixed_email(
    mail_services, admin, shop_id, smtp_server
):
    incident_id = make_incident(mail_services, shop_id, "refund", resolved=True)
    update_incident(mail_services, incident_id, resolved_by="auto_resolve")
    send_apology(incident_id)
    notify_resolved(incident_id)
    [apology] = smtp_server.wait_for(2, timeout=0.5)
    assert "refund" in apology["Subject"].lower()
    assert "apology covered it" in summary_of(mail_services, incident_id, "fixed_skipped")


def test_an_apology_sent_in_test_mode_is_followed_by_a_test_notice(
    mail_services, admin, shop_id, smtp_server
):
    update_shop(mail_services, shop_id, test_mode=True)
    set_settings(mail_services, shop_id, {"shop": {"test_address": "owner@calm-coffee.example"}})
    incident_id = make_incident(mail_services, shop_id)
    send_apology(incident_id)
    update_shop(mail_services, shop_id, test_mode=False)  # the merchant goes live meanwhile
    resolve_now(mail_services, incident_id)
    notify_resolved(incident_id)
    apology, fixed = smtp_server.wait_for(2)
    assert apology["To"] == fixed["To"] == "owner@calm-coffee.example"
    assert fixed["Subject"].startswith("[Test] ")
    assert messages(mail_services, incident_id)["fixed"].test
    assert summary_of(mail_services, incident_id, "fixed_sent").startswith("Test mode")


def test_smtp_451_on_the_notice_is_retried(mail_services, admin, shop_id, smtp_server):
    incident_id = make_incident(mail_services, shop_id)
    send_apology(incident_id)
    resolve_now(mail_services, incident_id)
    smtp_server.fail_next("451 later")
    with pytest.raises(MailRetryableError):
        notify_resolved(incident_id)
    assert "fixed_deferred" in events(mail_services, incident_id)
    notify_resolved(incident_id)
    assert len(smtp_server.wait_for(2)) == 2
    assert messages(mail_services, incident_id)["fixed"].state == SENT


def test_a_task_closed_by_staff_resolves_and_notifies(mail_services, admin, shop_id, smtp_server):
    incident_id = make_incident(mail_services, shop_id, "refund")
    send_apology(incident_id)
    update_incident(mail_services, incident_id, opened_at=utcnow() - timedelta(hours=3))
    resolve_now(mail_services, incident_id, cause="staff:jo@calm-coffee.example")
    notify_resolved(incident_id)
    fixed = smtp_server.wait_for(2)[1]
    assert "All sorted" in fixed["Subject"]
