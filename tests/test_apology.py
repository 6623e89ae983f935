# ruff: noqa: F401, F811 - pytest fixtures imported from tests.actions_support
"""send_apology: one code, one email, every step on the timeline, under retries and failures.

Real SMTP (aiosmtpd), real Redis for the queue, real database; only Shopify is faked, and the
fake checks every document and its variables against Shopify's schema.
"""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from actions.apology import retry, send_apology
from plugin import codes
from plugin.db import utcnow
from plugin.errors import ClaimHeldError, MailRetryableError, ShopifyRetryableError
from plugin.models import Message, OutboxEmail
from plugin.models import discount as code_states
from plugin.models.incident import APOLOGISED
from plugin.models.message import FAILED, PENDING, SENT, SKIPPED
from plugin.worker import run_worker
from tests.actions_support import (
    admin,
    code_row,
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
    store_settings_unchecked,
    summary_of,
    text_of,
    update_incident,
    update_shop,
)
from tests.factories import make_shop
from tests.graphql_schema import document_errors
from tests.shopify_fake import FakeAdmin

pytestmark = pytest.mark.redis

SECRET = "test-secret-key-0123456789abcdef0123456789"


def test_apology_creates_one_customer_limited_code_and_sends_one_email(
    mail_services, admin, shop_id, smtp_server
):
    incident_id = make_incident(
        mail_services, shop_id, order_name="#1042", details={"status": "delayed"}, customer_id=7_000_000_042
    )

    send_apology(incident_id)

    code = codes.derive(SECRET, incident_id)
    [mutation] = admin.discount_mutations
    assert mutation.operation == "discountCodeBasicCreate"
    assert document_errors(mutation.document, mutation.variables) == []
    sent = mutation.variables["discount"]
    assert sent["code"] == code
    assert sent["usageLimit"] == 1 and sent["appliesOncePerCustomer"] is True
    assert sent["context"] == {"customers": {"add": ["gid://shopify/Customer/7000000042"]}}
    assert sent["customerGets"] == {"value": {"percentage": 0.1}, "items": {"all": True}}
    assert f"[Amends #{incident_id}]" in sent["title"] and "#1042" in sent["title"]
    assert sent["endsAt"] > sent["startsAt"]
    assert "minimumRequirement" not in sent

    [email] = smtp_server.wait_for(1)
    assert email["To"] == "jane@example.test"
    assert email["From"] == "Calm Coffee <amends@example.test>"
    assert email["Reply-To"] == "hello@calm-coffee.example"
    assert email["Message-ID"] == f"<apology-{incident_id}@amends.example.test>"
    assert "#1042" in email["Subject"]
    assert code in text_of(email) and code in html_of(email)
    assert "Hi Jane," in text_of(email) and "10% off" in text_of(email)

    assert incident(mail_services, incident_id).state == APOLOGISED
    assert code_row(mail_services, incident_id).state == code_states.CREATED
    assert messages(mail_services, incident_id)["apology"].state == SENT
    assert events(mail_services, incident_id)[-2:] == ["code_created", "apology_sent"]
    assert code in summary_of(mail_services, incident_id, "apology_sent")
    assert "limited to this customer" in summary_of(mail_services, incident_id, "code_created")


def test_running_the_job_again_sends_nothing_more(mail_services, admin, shop_id, smtp_server):
    incident_id = make_incident(mail_services, shop_id)
    send_apology(incident_id)
    send_apology(incident_id)
    send_apology(incident_id)
    assert len(admin.discount_mutations) == 1
    assert len(smtp_server.wait_for(2, timeout=0.5)) == 1


def test_each_kind_gets_its_compensation(mail_services, admin, shop_id, smtp_server):
    late = make_incident(mail_services, shop_id, "late_delivery")
    ret = make_incident(mail_services, shop_id, "return", customer_id=2, email="b@example.test")
    refund = make_incident(mail_services, shop_id, "refund", customer_id=3, email="c@example.test")
    set_settings(
        mail_services, shop_id, {"refund": {"minimum_order": "40", "combines_with_order_discounts": True}}
    )
    for incident_id in (late, ret, refund):
        send_apology(incident_id)

    by_code = {c.variables["discount"]["code"]: c for c in admin.discount_mutations}
    free = by_code[codes.derive(SECRET, ret)]
    assert free.operation == "discountCodeFreeShippingCreate"
    assert free.variables["discount"]["destination"] == {"all": True}
    assert "customerGets" not in free.variables["discount"]
    fixed = by_code[codes.derive(SECRET, refund)].variables["discount"]
    assert fixed["customerGets"]["value"] == {
        "discountAmount": {"amount": "5.00", "appliesOnEachItem": False}
    }
    assert fixed["minimumRequirement"] == {"subtotal": {"greaterThanOrEqualToSubtotal": "40.00"}}
    assert fixed["combinesWith"]["orderDiscounts"] is True
    emails = {m["To"]: text_of(m) for m in smtp_server.wait_for(3)}
    assert "free shipping" in emails["b@example.test"]
    assert "$5.00 off" in emails["c@example.test"] and "$40.00 or more" in emails["c@example.test"]


def test_a_customer_named_script_is_escaped_in_html(mail_services, admin, shop_id, smtp_server):
    incident_id = make_incident(mail_services, shop_id, first_name="<script>alert(1)</script>")
    send_apology(incident_id)
    [email] = smtp_server.wait_for(1)
    assert "<script>" not in html_of(email)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_of(email)
    assert "Hi <script>alert(1)</script>," in text_of(email)  # plain text is not HTML


def test_an_unknown_customer_gets_a_code_for_anyone_but_still_single_use(mail_services, admin, shop_id):
    incident_id = make_incident(mail_services, shop_id, customer_id=None)
    send_apology(incident_id)
    [mutation] = admin.discount_mutations
    assert mutation.variables["discount"]["context"] == {"all": "ALL"}
    assert mutation.variables["discount"]["usageLimit"] == 1


# ---------------------------------------------------------------------------------------------
# Crashes and retries


def test_crash_after_shopify_created_the_code_reuses_it_and_sends_one_email(
    mail_services, admin, shop_id, smtp_server
):
    """The state a worker leaves when it dies between Shopify's answer and our commit: the code
    exists in the shop, our row still says pending."""
    incident_id = make_incident(mail_services, shop_id)
    code = codes.derive(SECRET, incident_id)
    admin.discounts[code] = {
        "id": "gid://shopify/DiscountCodeNode/77",
        "title": f"Apology for order #1001 (late delivery) [Amends #{incident_id}]",
        "typename": "DiscountCodeBasic",
        "input": {},
    }
    with mail_services.db.session() as session:
        session.add(
            code_states.DiscountCode(
                shop_id=shop_id,
                incident_id=incident_id,
                code=code,
                compensation="percentage",
                value=Decimal(10),
                currency="USD",
                ends_at=utcnow() + timedelta(days=30),
                state=code_states.PENDING,
            )
        )

    send_apology(incident_id)

    assert [c.operation for c in admin.calls] == ["discountCodeBasicCreate", "codeDiscountNodeByCode"]
    assert code_row(mail_services, incident_id).shopify_id == "gid://shopify/DiscountCodeNode/77"
    [email] = smtp_server.wait_for(1)
    assert code in text_of(email)
    assert "earlier attempt" in summary_of(mail_services, incident_id, "code_created")


def test_crash_while_sending_waits_for_the_claim_then_sends_once_with_the_same_code(
    mail_services, admin, shop_id, smtp_server
):
    incident_id = make_incident(mail_services, shop_id)
    smtp_server.fail_next("451 4.3.0 try later")
    with pytest.raises(MailRetryableError):
        send_apology(incident_id)
    # A worker that died mid-send leaves its claim behind.
    with mail_services.db.session() as session:
        message = session.scalar(select(Message).where(Message.incident_id == incident_id))
        message.sending_until = utcnow() + timedelta(seconds=90)
    with pytest.raises(ClaimHeldError):
        send_apology(incident_id)
    assert smtp_server.wait_for(1, timeout=0.3) == []
    # The claim expires: the next attempt sends, once, with the code already made.
    with mail_services.db.session() as session:
        message = session.scalar(select(Message).where(Message.incident_id == incident_id))
        message.sending_until = utcnow() - timedelta(seconds=1)
    send_apology(incident_id)
    send_apology(incident_id)
    [email] = smtp_server.wait_for(2, timeout=0.5)
    assert codes.derive(SECRET, incident_id) in text_of(email)
    assert len(admin.discount_mutations) == 1


def test_smtp_451_then_success(mail_services, admin, shop_id, smtp_server):
    incident_id = make_incident(mail_services, shop_id)
    smtp_server.fail_next("451 4.3.0 Mailbox busy, try again")
    with pytest.raises(MailRetryableError, match="451"):
        send_apology(incident_id)
    message = messages(mail_services, incident_id)["apology"]
    assert message.state == PENDING and message.sending_until is None and "451" in message.error
    assert "451" in summary_of(mail_services, incident_id, "email_deferred")

    send_apology(incident_id)  # the queue's retry
    assert len(smtp_server.wait_for(1)) == 1
    assert len(admin.discount_mutations) == 1
    assert messages(mail_services, incident_id)["apology"].state == SENT


def test_smtp_5xx_needs_attention_and_retry_sends(mail_services, admin, shop_id, smtp_server):
    incident_id = make_incident(mail_services, shop_id)
    smtp_server.fail_next("550 5.1.1 No such user")
    send_apology(incident_id)  # recorded, not raised: a retry cannot help
    found = incident(mail_services, incident_id)
    assert "550" in found.needs_attention
    assert messages(mail_services, incident_id)["apology"].state == FAILED
    send_apology(incident_id)
    assert smtp_server.wait_for(1, timeout=0.3) == []

    retry(incident_id, "jo@calm-coffee.example")
    assert incident(mail_services, incident_id).needs_attention is None
    assert any(func == "actions.apology.send_apology" for func, _, _ in queued(mail_services))
    run_worker(mail_services, burst=True)
    [email] = smtp_server.wait_for(1)
    assert email["Message-ID"] == f"<apology-{incident_id}@amends.example.test>"
    assert len(admin.discount_mutations) == 1


def test_throttled_then_success(mail_services, admin, shop_id, smtp_server):
    incident_id = make_incident(mail_services, shop_id)
    admin.fail_next("discountCodeBasicCreate", admin.throttled(available=2, restore_rate=100))
    send_apology(incident_id)
    assert [c.operation for c in admin.calls] == ["discountCodeBasicCreate", "discountCodeBasicCreate"]
    assert len(admin.discounts) == 1
    assert len(smtp_server.wait_for(1)) == 1


def test_5xx_raises_for_the_queue_then_the_retry_finishes(mail_services, admin, shop_id, smtp_server):
    incident_id = make_incident(mail_services, shop_id)
    admin.fail_next("discountCodeBasicCreate", admin.server_error(503, retry_after="60"))
    with pytest.raises(ShopifyRetryableError) as raised:
        send_apology(incident_id)
    assert raised.value.retry_after == 60
    assert "503" in summary_of(mail_services, incident_id, "code_deferred")
    assert smtp_server.wait_for(1, timeout=0.3) == []
    send_apology(incident_id)  # the queue's retry
    assert len(admin.discounts) == 1
    assert len(smtp_server.wait_for(1)) == 1


def test_a_429_retry_after_holds_every_worker_back(mail_services, admin, shop_id, smtp_server):
    incident_id = make_incident(mail_services, shop_id)
    admin.fail_next("discountCodeBasicCreate", admin.server_error(429, retry_after="60"))
    with pytest.raises(ShopifyRetryableError) as raised:
        send_apology(incident_id)
    assert raised.value.retry_after == 60
    assert "429" in summary_of(mail_services, incident_id, "code_deferred")
    # A retry before the minute is up (the queue's first backoff is seconds) calls nobody.
    with pytest.raises(ShopifyRetryableError) as early:
        send_apology(incident_id)
    assert 55 < early.value.retry_after <= 61
    assert len(admin.calls) == 1
    assert smtp_server.wait_for(1, timeout=0.3) == []


def test_a_short_retry_after_is_waited_out_then_the_code_is_made(mail_services, admin, shop_id, smtp_server):
    incident_id = make_incident(mail_services, shop_id)
    admin.fail_next("discountCodeBasicCreate", admin.server_error(429, retry_after="6"))
    with pytest.raises(ShopifyRetryableError):
        send_apology(incident_id)  # 6 s is more than a job waits inline
    started = time.monotonic()
    send_apology(incident_id)  # the retry waits out the rest of the 6 s, then calls once
    assert time.monotonic() - started > 5
    assert len(admin.calls) == 2 and len(admin.discounts) == 1
    assert len(smtp_server.wait_for(1)) == 1


def test_the_queue_retries_a_throttled_job_with_backoff(mail_services, admin, shop_id, smtp_server):
    """Through a real RQ worker: the job fails on a long THROTTLED, is retried later, then succeeds."""
    incident_id = make_incident(mail_services, shop_id)
    admin.fail_next("discountCodeBasicCreate", admin.throttled(available=0, restore_rate=1))  # 10 s wait
    mail_services.queue.enqueue("actions.apology.send_apology", incident_id, job_id=f"apology-{incident_id}")
    run_worker(mail_services, burst=True)
    assert smtp_server.wait_for(1, timeout=0.3) == []
    assert f"apology-{incident_id}" in [job_id for _, _, job_id in queued(mail_services)]
    deadline = time.monotonic() + 20
    while not smtp_server.messages and time.monotonic() < deadline:
        time.sleep(0.3)
        run_worker(mail_services, burst=True)
    assert len(smtp_server.wait_for(1)) == 1
    assert len(admin.discounts) == 1


def test_taken_by_someone_elses_discount_needs_attention(mail_services, admin, shop_id, smtp_server):
    incident_id = make_incident(mail_services, shop_id)
    admin.discounts[codes.derive(SECRET, incident_id)] = {
        "id": "gid://shopify/DiscountCodeNode/5",
        "title": "Black Friday",
        "typename": "DiscountCodeBasic",
        "input": {},
    }
    send_apology(incident_id)
    reason = incident(mail_services, incident_id).needs_attention
    assert "already used by another discount" in reason and "Black Friday" in reason
    assert code_row(mail_services, incident_id).state == code_states.FAILED
    assert smtp_server.wait_for(1, timeout=0.3) == []


def test_other_user_errors_need_attention_with_shopifys_message_then_retry(
    mail_services, admin, shop_id, smtp_server
):
    incident_id = make_incident(mail_services, shop_id)
    admin.fail_next(
        "discountCodeBasicCreate",
        admin.user_errors(
            "discountCodeBasicCreate",
            {"code": "INVALID", "field": ["basicCodeDiscount", "endsAt"], "message": "Ends at is invalid"},
        ),
    )
    send_apology(incident_id)
    found = incident(mail_services, incident_id)
    assert "Ends at is invalid" in found.needs_attention
    assert "code_failed" in events(mail_services, incident_id)
    send_apology(incident_id)  # a sweep or a duplicate job changes nothing while it needs attention
    assert len(admin.discount_mutations) == 1

    retry(incident_id)
    run_worker(mail_services, burst=True)
    assert len(admin.discount_mutations) == 2
    assert code_row(mail_services, incident_id).state == code_states.CREATED
    assert len(smtp_server.wait_for(1)) == 1


def test_a_broken_template_stored_anyway_needs_attention(mail_services, admin, shop_id, smtp_server):
    store_settings_unchecked(
        mail_services, shop_id, {"late_delivery": {"apology_text": "Hi {{ nobody.name }}"}}
    )
    incident_id = make_incident(mail_services, shop_id)
    send_apology(incident_id)
    assert "template" in incident(mail_services, incident_id).needs_attention
    assert smtp_server.wait_for(1, timeout=0.3) == []
    assert messages(mail_services, incident_id)["apology"].state == PENDING


def test_an_uninstalled_shop_gets_no_apology(mail_services, admin, shop_id, smtp_server):
    incident_id = make_incident(mail_services, shop_id)
    update_shop(mail_services, shop_id, uninstalled_at=utcnow())
    send_apology(incident_id)
    assert admin.calls == [] and smtp_server.wait_for(1, timeout=0.3) == []
    assert "uninstalled" in incident(mail_services, incident_id).needs_attention


# ---------------------------------------------------------------------------------------------
# Who gets an apology


def test_one_apology_per_customer_within_the_window(mail_services, admin, shop_id, smtp_server):
    first = make_incident(mail_services, shop_id, order_name="#1001")
    second = make_incident(mail_services, shop_id, "refund", order_name="#1002")
    same_email_no_id = make_incident(
        mail_services, shop_id, order_name="#1003", customer_id=None, email="JANE@example.test"
    )
    other = make_incident(
        mail_services, shop_id, order_name="#1004", customer_id=99, email="sam@example.test"
    )
    for incident_id in (first, second, same_email_no_id, other):
        send_apology(incident_id)

    assert [m["To"] for m in smtp_server.wait_for(2)] == ["jane@example.test", "sam@example.test"]
    assert len(admin.discount_mutations) == 2
    why = summary_of(mail_services, second, "apology_skipped")
    assert "#1001" in why and f"incident {first}" in why and "7-day window" in why
    assert messages(mail_services, second)["apology"].state == SKIPPED
    assert "apology_skipped" in events(mail_services, same_email_no_id)

    from actions.follow_up import open_follow_up

    open_follow_up(second)  # the later incident still gets its task
    assert "task_opened" in events(mail_services, second)


def test_the_window_ends(mail_services, admin, shop_id, smtp_server):
    set_settings(mail_services, shop_id, {"shop": {"customer_window_days": 3}})
    first = make_incident(mail_services, shop_id)
    send_apology(first)
    with mail_services.db.session() as session:
        message = session.scalar(select(Message).where(Message.incident_id == first))
        message.sent_at = utcnow() - timedelta(days=4)
    later = make_incident(mail_services, shop_id, order_name="#1009")
    send_apology(later)
    assert len(smtp_server.wait_for(2)) == 2


def test_no_email_address_is_said_on_the_timeline(mail_services, admin, shop_id, smtp_server):
    withheld = make_incident(
        mail_services, shop_id, email=None, first_name=None, missing=["first_name", "email"]
    )
    none = make_incident(mail_services, shop_id, email=None, customer_id=None)
    send_apology(withheld)
    send_apology(none)
    assert admin.calls == [] and smtp_server.wait_for(1, timeout=0.3) == []
    assert "protected customer data" in summary_of(mail_services, withheld, "apology_skipped")
    assert "no email address" in summary_of(mail_services, none, "apology_skipped")
    assert incident(mail_services, withheld).needs_attention is None


def test_declined_consent_sends_an_apology_without_a_code(mail_services, admin, shop_id, smtp_server):
    set_settings(mail_services, shop_id, {"shop": {"respect_marketing_consent": True}})
    declined = make_incident(mail_services, shop_id, consent=False)
    unknown = make_incident(mail_services, shop_id, consent=None, customer_id=5, email="u@example.test")
    send_apology(declined)
    send_apology(unknown)
    emails = {m["To"]: text_of(m) for m in smtp_server.wait_for(2)}
    assert codes.derive(SECRET, declined) not in emails["jane@example.test"]
    assert "make up for" not in emails["jane@example.test"]
    assert codes.derive(SECRET, unknown) in emails["u@example.test"]
    assert len(admin.discount_mutations) == 1
    assert "marketing" in summary_of(mail_services, declined, "apology_without_code")
    assert "without a discount code" in summary_of(mail_services, declined, "apology_sent")


def test_declined_consent_can_mean_no_email_at_all(mail_services, admin, shop_id, smtp_server):
    set_settings(
        mail_services, shop_id, {"shop": {"respect_marketing_consent": True, "without_consent": "skip"}}
    )
    declined = make_incident(mail_services, shop_id, consent=False)
    send_apology(declined)
    assert admin.calls == [] and smtp_server.wait_for(1, timeout=0.3) == []
    assert "marketing" in summary_of(mail_services, declined, "apology_skipped")


def test_consent_is_ignored_unless_the_merchant_asks(mail_services, admin, shop_id, smtp_server):
    declined = make_incident(mail_services, shop_id, consent=False)
    send_apology(declined)
    assert codes.derive(SECRET, declined) in text_of(smtp_server.wait_for(1)[0])


def test_a_kind_turned_off_or_without_compensation(mail_services, admin, shop_id, smtp_server):
    set_settings(mail_services, shop_id, {"return": {"enabled": False}, "refund": {"compensation": "none"}})
    off = make_incident(mail_services, shop_id, "return")
    plain = make_incident(mail_services, shop_id, "refund", customer_id=8, email="p@example.test")
    send_apology(off)
    send_apology(plain)
    assert "turned off" in summary_of(mail_services, off, "apology_skipped")
    [email] = smtp_server.wait_for(1)
    assert email["To"] == "p@example.test" and "make up" not in text_of(email)
    assert admin.calls == []


def test_a_delay_schedules_the_apology_and_rechecks_the_incident(mail_services, admin, shop_id, smtp_server):
    set_settings(mail_services, shop_id, {"late_delivery": {"delay_minutes": 120}})
    waits = make_incident(mail_services, shop_id)
    resolves = make_incident(mail_services, shop_id, customer_id=11, email="r@example.test")
    send_apology(waits)
    send_apology(resolves)
    send_apology(waits)  # a duplicate run schedules nothing twice on the timeline
    assert smtp_server.wait_for(1, timeout=0.3) == [] and admin.calls == []
    assert events(mail_services, waits).count("apology_scheduled") == 1
    later = {job_id for func, args, job_id in queued(mail_services) if func == "actions.apology.send_apology"}
    assert {f"apology-{waits}-later", f"apology-{resolves}-later"} <= later

    # Two hours later: one is still open, the parcel of the other has moved on.
    past = utcnow() - timedelta(minutes=121)
    update_incident(mail_services, waits, opened_at=past)
    update_incident(
        mail_services, resolves, opened_at=past, resolved_at=utcnow(), resolved_by="webhook:delivered"
    )
    send_apology(waits)
    send_apology(resolves)
    assert [m["To"] for m in smtp_server.wait_for(1)] == ["jane@example.test"]
    assert "before the apology was due" in summary_of(mail_services, resolves, "apology_skipped")


def test_waits_for_the_order_context_the_intake_is_still_reading(mail_services, admin, shop_id, smtp_server):
    incident_id = make_incident(mail_services, shop_id, email=None, missing=["order_context"])
    send_apology(incident_id)
    assert messages(mail_services, incident_id) == {}
    assert admin.calls == []


def test_resolved_while_the_apology_was_on_its_way_enqueues_the_fixed_notice(mail_services, admin, shop_id):
    incident_id = make_incident(mail_services, shop_id, "refund", resolved=True)
    send_apology(incident_id)  # refunds are apologised for even when resolved at once
    assert messages(mail_services, incident_id)["apology"].state == SENT
    assert ("actions.notify.notify_resolved", (incident_id,), f"notify-{incident_id}") in queued(
        mail_services
    )


# ---------------------------------------------------------------------------------------------
# Test mode


def test_test_mode_without_a_test_address_uses_the_outbox_and_creates_no_code(
    mail_services, admin, shop_id, smtp_server
):
    update_shop(mail_services, shop_id, test_mode=True)
    incident_id = make_incident(mail_services, shop_id)
    send_apology(incident_id)
    assert admin.calls == []
    assert smtp_server.wait_for(1, timeout=0.3) == []
    with mail_services.db.session() as session:
        [outbox] = session.scalars(select(OutboxEmail)).all()
    code = codes.derive(SECRET, incident_id)
    assert outbox.subject.startswith("[Test] ") and code in outbox.text_body
    assert "Test email" in outbox.html_body
    row = code_row(mail_services, incident_id)
    assert row.state == code_states.TEST and row.test
    assert summary_of(mail_services, incident_id, "code_recorded").startswith("Test mode")
    assert summary_of(mail_services, incident_id, "apology_sent").startswith("Test mode")
    message = messages(mail_services, incident_id)["apology"]
    assert message.test and message.redirected_from == "jane@example.test"


def test_test_mode_with_a_test_address_and_real_test_codes(mail_services, admin, shop_id, smtp_server):
    update_shop(mail_services, shop_id, test_mode=True)
    set_settings(
        mail_services,
        shop_id,
        {"shop": {"test_address": "owner@calm-coffee.example", "real_test_codes": True}},
    )
    incident_id = make_incident(mail_services, shop_id)
    send_apology(incident_id)
    [email] = smtp_server.wait_for(1)
    assert email["To"] == "owner@calm-coffee.example"
    assert email["X-Amends-Test"] == "yes" and email["Subject"].startswith("[Test] ")
    [mutation] = admin.discount_mutations
    assert mutation.variables["discount"]["title"].startswith("[Test] ")
    assert summary_of(mail_services, incident_id, "code_created").startswith("Test mode")


def test_test_apologies_do_not_hold_back_real_ones(mail_services, admin, shop_id, smtp_server):
    update_shop(mail_services, shop_id, test_mode=True)
    tried = make_incident(mail_services, shop_id)
    send_apology(tried)
    update_shop(mail_services, shop_id, test_mode=False)
    real_one = make_incident(mail_services, shop_id, order_name="#2001")
    send_apology(real_one)
    assert [m["To"] for m in smtp_server.wait_for(1)] == ["jane@example.test"]


def test_another_shops_customer_has_its_own_window_and_code(
    mail_services, admin, shop_id, smtp_server, shopify
):
    other = make_shop(mail_services, domain="other-store.myshopify.com", name="Other Store")
    other_admin = FakeAdmin(shop="other-store.myshopify.com").install(shopify)
    first = make_incident(mail_services, shop_id)
    second = make_incident(mail_services, other.id)  # the same customer id, another shop
    send_apology(first)
    send_apology(second)
    assert [m["From"] for m in smtp_server.wait_for(2)] == [
        "Calm Coffee <amends@example.test>",
        "Other Store <amends@example.test>",
    ]
    assert [c.variables["discount"]["code"] for c in admin.discount_mutations] == [
        codes.derive(SECRET, first)
    ]
    assert [c.variables["discount"]["code"] for c in other_admin.discount_mutations] == [
        codes.derive(SECRET, second)
    ]


# ---------------------------------------------------------------------------------------------
# The documents themselves


@pytest.mark.parametrize(
    ("compensation", "value", "customer_id", "minimum"),
    [
        ("percentage", Decimal("12.5"), 42, None),
        ("fixed_amount", Decimal("5"), None, Decimal("30")),
        ("free_shipping", None, 42, Decimal("20")),
    ],
)
def test_every_discount_document_fits_shopifys_schema(compensation, value, customer_id, minimum):
    from plugin.shopify.discounts import FIND_CODE, CodeSpec, mutation_for
    from plugin.shopify.tags import TAG_ORDER
    from tests.graphql_schema import assert_valid

    spec = CodeSpec(
        code="7KXF-M3WC-HJ4P",
        title="Apology for order #1 (refund) [Amends #1]",
        marker="[Amends #1]",
        compensation=compensation,
        value=value,
        starts_at=utcnow(),
        ends_at=utcnow() + timedelta(days=30),
        customer_id=customer_id,
        minimum_order=minimum,
    )
    document, _, variables = mutation_for(spec)
    assert_valid(document, variables)
    assert_valid(FIND_CODE, {"code": spec.code})
    assert_valid(TAG_ORDER, {"id": "gid://shopify/Order/1", "tags": ["amends"]})
