"""send_apology(incident_id): the customer's apology, with the incident's one discount code.

Three steps in short units of work (no network call inside one), each on the incident's
timeline:

1. **Decide** (once): whether this incident gets an apology at all (kind turned off, a delay
   still running, resolved already, no email address, consent, one apology per customer per
   window), recorded as the apology `Message` row: pending (send it) or skipped (with why).
2. **Code**: the `DiscountCode` row holds the code derived from the incident (written with
   the decision, in the same unit of work); the shop gets it through one mutation. A retry
   proposes the same code; Shopify's `TAKEN` means an earlier attempt made it, and we carry
   on with it.
3. **Email**: `plugin.sending.deliver` sends the message once, under an expiring claim.

Passing failures (Admin API 429/5xx/THROTTLED, SMTP 4xx, connections) raise, so the queue
retries with backoff. Permanent ones (Shopify's userErrors, SMTP 5xx, a broken template, the
shop gone) set `incident.needs_attention` with the reason and stop; `retry(incident_id)`
clears them and runs the steps again once a person has fixed the cause.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from plugin import codes, emails, sending
from plugin.db import utcnow
from plugin.errors import (
    MailPermanentError,
    MailRetryableError,
    PermanentError,
    RetryableError,
    ShopifyAuthError,
    TemplateError,
)
from plugin.incidents import add_timeline
from plugin.jobs import enqueue_after_commit
from plugin.logs import mask_email
from plugin.models import DiscountCode, Incident, Message, Shop, TimelineEntry
from plugin.models import discount as code_states
from plugin.models.incident import APOLOGISED, DETECTED, REFUND
from plugin.models.message import APOLOGY, FAILED, PENDING, SENT
from plugin.services import Services, current
from plugin.settings import KindSettings, Settings, load
from plugin.shopify.client import ShopifyClient
from plugin.shopify.discounts import CodeSpec, create_discount_code

log = logging.getLogger(__name__)

SOURCE = "job:send_apology"
SEND_APOLOGY = "actions.apology.send_apology"
OPEN_FOLLOW_UP = "actions.follow_up.open_follow_up"
NOTIFY_RESOLVED = "actions.notify.notify_resolved"
CONTEXT_PENDING = "order_context"  # plugin.incidents: the order's context is still being read
AUTO_RESOLVED = "auto_resolve"  # Incident.resolved_by when the kind's settings resolve at once

KIND_LABELS = {"late_delivery": "late delivery", "return": "return", "refund": "refund"}
KIND_PLURALS = {"late_delivery": "late deliveries", "return": "returns", "refund": "refunds"}


@dataclass(frozen=True)
class Plan:
    """What the decision step settled, in plain values for the steps after it."""

    incident_id: int
    shop_domain: str
    message_id: str
    with_code: bool
    test_mode: bool
    # The code step's first part, done in the decision's unit of work: True when the code is
    # ready, False when the incident needs a person, else what to create in the shop.
    code: bool | CodeSpec = True


def send_apology(incident_id: int) -> None:
    services = current()
    plan = _decide(services, incident_id)
    if plan is None:
        return
    if plan.with_code and not _ensure_code(services, plan):
        return
    _send(services, plan)


# ---------------------------------------------------------------------------------------------
# 1. Decide


def _decide(services: Services, incident_id: int) -> Plan | None:
    config = services.config
    with services.db.session() as session:
        incident = session.get(Incident, incident_id)
        if incident is None:
            log.info("incident %s is gone; no apology", incident_id)
            return None
        shop = session.get(Shop, incident.shop_id)
        if shop is None or not shop.installed:
            if shop is not None:
                flag(session, incident, "The shop has uninstalled Amends: no apology was sent.", SOURCE)
            return None
        message_id = sending.message_id_for(config, APOLOGY, incident.id)
        message = sending.find(session, message_id)
        if message is not None and message.state == FAILED and incident.needs_attention is None:
            sending.reset_failed(message)  # a person cleared "needs attention": try again
        if message is not None and message.state != PENDING:
            return None  # decided (and sent, skipped or failed) before
        if CONTEXT_PENDING in (incident.missing or []):
            log.info(
                "incident %s: the order's context is still being read; it enqueues the apology", incident.id
            )
            return None
        settings = load(session, shop.id)
        kind_settings = settings.kind(incident.kind)
        with_code = kind_settings.compensation != "none"
        if message is None:
            if _wait_for_delay(session, services, incident, kind_settings):
                return None
            # Serialise the per-customer window check per shop (PostgreSQL; SQLite writes
            # are serialised anyway).
            session.execute(select(Shop.id).where(Shop.id == shop.id).with_for_update())
            reason = _reason_not_to_apologise(session, incident, shop, settings, kind_settings)
            message = sending.get_or_create(
                session, shop_id=shop.id, incident_id=incident.id, kind=APOLOGY, message_id=message_id
            )
            message.test = shop.test_mode
            if reason is not None:
                sending.skip(message, reason)
                add_timeline(session, incident, "apology_skipped", reason, SOURCE, data=_test(shop))
                log.info("incident %s: no apology: %s", incident.id, reason)
                if incident.resolved_at is not None:
                    # The notice waited for this decision: let it record its own.
                    enqueue_after_commit(
                        session, services, NOTIFY_RESOLVED, incident.id, job_id=f"notify-{incident.id}"
                    )
                return None
            if with_code and _declined_marketing(incident, settings):
                add_timeline(
                    session,
                    incident,
                    "apology_without_code",
                    "The customer has not agreed to marketing emails: the apology goes without a "
                    "discount code, as the settings ask.",
                    SOURCE,
                    data=_test(shop),
                )
        if with_code and _declined_marketing(incident, settings):
            with_code = False
        existing_code = session.scalar(select(DiscountCode).where(DiscountCode.incident_id == incident.id))
        with_code = with_code or existing_code is not None
        return Plan(
            incident_id=incident.id,
            shop_domain=shop.domain,
            message_id=message_id,
            with_code=with_code,
            test_mode=shop.test_mode,
            code=(
                _prepare_code(session, config.secret_key, incident, shop, settings, existing_code)
                if with_code
                else True
            ),
        )


def _wait_for_delay(session: Session, services: Services, incident: Incident, kind: KindSettings) -> bool:
    """True when the kind's delay has not run out yet: the job is scheduled for then."""
    if not kind.delay_minutes:
        return False
    due = incident.opened_at + timedelta(minutes=kind.delay_minutes)
    wait = due - utcnow()
    if wait <= timedelta(0):
        return False
    already = session.scalar(
        select(TimelineEntry.id).where(
            TimelineEntry.incident_id == incident.id, TimelineEntry.event == "apology_scheduled"
        )
    )
    if already is None:
        add_timeline(
            session,
            incident,
            "apology_scheduled",
            f"The apology waits {kind.delay_minutes} minutes, as the settings ask, in case the problem "
            f"resolves itself; it goes out at {due:%Y-%m-%d %H:%M} UTC if the incident is still open.",
            SOURCE,
            data={"due_at": due.isoformat()},
        )
    enqueue_after_commit(
        session, services, SEND_APOLOGY, incident.id, job_id=f"apology-{incident.id}-later", delay=wait
    )
    return True


def _reason_not_to_apologise(
    session: Session, incident: Incident, shop: Shop, settings: Settings, kind: KindSettings
) -> str | None:
    label = KIND_LABELS.get(incident.kind, incident.kind)
    if not kind.enabled:
        return (
            f"Apologies for {KIND_PLURALS.get(incident.kind, incident.kind)} are turned off in the settings."
        )
    if incident.resolved_at is not None and incident.kind != REFUND and incident.resolved_by != AUTO_RESOLVED:
        return (
            f"The {label} was resolved ({incident.resolved_by or 'resolved'}) before the apology was due: "
            "no apology was needed."
        )
    missing = set(incident.missing or [])
    if "order" in missing:
        return "Shopify has no such order (deleted, or never there): nobody to apologise to."
    if not incident.customer_email:
        if missing & {"email", "customer"}:
            return (
                "Shopify withheld the customer's email address (protected customer data), so no apology "
                "could be sent. The follow-up task is still open."
            )
        return "The order has no email address for the customer, so no apology could be sent."
    if _declined_marketing(incident, settings) and settings.shop.without_consent == "skip":
        return (
            "The customer has not agreed to marketing emails, and the settings say to send nothing "
            "in that case."
        )
    earlier = _earlier_apology(session, incident, shop, settings.shop.customer_window_days)
    if earlier is not None:
        other_id, order_name, at = earlier
        return (
            f"This customer already has an apology ({at:%Y-%m-%d}) for order {order_name or '?'} "
            f"(incident {other_id}), within the {settings.shop.customer_window_days}-day window: no second "
            "apology or code. The follow-up task is still open."
        )
    return None


def _declined_marketing(incident: Incident, settings: Settings) -> bool:
    return settings.shop.respect_marketing_consent and incident.marketing_consent is False


def _earlier_apology(
    session: Session, incident: Incident, shop: Shop, window_days: int
) -> tuple[int, str | None, object] | None:
    """Another incident of this customer whose apology went out (or is going out) within the
    window, in the same mode (test apologies do not hold back real ones)."""
    if window_days <= 0:
        return None
    same_customer = []
    if incident.customer_id is not None:
        same_customer.append(Incident.customer_id == incident.customer_id)
    if incident.customer_email:
        same_customer.append(func.lower(Incident.customer_email) == incident.customer_email.lower())
    if not same_customer:
        return None
    since = utcnow() - timedelta(days=window_days)
    row = session.execute(
        select(Incident.id, Incident.order_name, func.coalesce(Message.sent_at, Message.created_at))
        .join(Message, Message.incident_id == Incident.id)
        .where(
            Incident.shop_id == shop.id,
            Incident.id != incident.id,
            Message.kind == APOLOGY,
            Message.test == shop.test_mode,
            or_(
                and_(Message.state == SENT, Message.sent_at >= since),
                and_(Message.state == PENDING, Message.created_at >= since),
            ),
            or_(*same_customer),
        )
        .order_by(Message.id)
        .limit(1)
    ).first()
    return (row[0], row[1], row[2]) if row else None


# ---------------------------------------------------------------------------------------------
# 2. The code


def _prepare_code(
    session: Session,
    secret_key: str,
    incident: Incident,
    shop: Shop,
    settings: Settings,
    row: DiscountCode | None,
) -> bool | CodeSpec:
    """The code's row (created pending with the code derived from the incident): True when the
    code is ready (in the shop, or recorded as a test), False when the incident needs a person
    first, else the spec to create in the shop."""
    kind = settings.kind(incident.kind)
    if row is None:
        row = _new_code_row(session, secret_key, incident, shop, kind)
    if row.state in (code_states.CREATED, code_states.TEST):
        return True
    if row.state == code_states.FAILED:
        if incident.needs_attention is not None:
            return False  # a person has to look first
        row.state = code_states.PENDING  # they did, and cleared it: try again
        row.error = None
    if shop.test_mode and not settings.shop.real_test_codes:
        row.state = code_states.TEST
        row.test = True
        add_timeline(
            session,
            incident,
            "code_recorded",
            f"Test mode: code {row.code} ({_describe(row)}) recorded for the test email but not created "
            "in the shop. Turn on real test codes to create test codes in the shop.",
            SOURCE,
            data={"code": row.code, "test": True},
        )
        return True
    row.test = shop.test_mode
    return _spec(row, incident, kind)


def _ensure_code(services: Services, plan: Plan) -> bool:
    """True when the code exists (in the shop, or recorded as a test); False when the incident
    now needs attention. The decision step prepared it (`plan.code`)."""
    if isinstance(plan.code, bool):
        return plan.code
    spec = plan.code
    try:
        created = create_discount_code(ShopifyClient(services, plan.shop_domain), spec)
    except RetryableError as error:
        note(
            services,
            plan.incident_id,
            "code_deferred",
            f"Shopify did not take the code yet ({error}); retrying.",
        )
        raise
    except ShopifyAuthError as error:
        _code_failed(
            services,
            plan.incident_id,
            f"Shopify refused Amends' access: open Amends from the Shopify admin to re-authorise ({error}).",
        )
        return False
    except PermanentError as error:
        _code_failed(services, plan.incident_id, f"The discount code could not be created: {error}")
        return False
    with services.db.session() as session:
        incident = load_incident(session, plan.incident_id)
        row = session.scalar(select(DiscountCode).where(DiscountCode.incident_id == incident.id))
        assert row is not None
        row.state = code_states.CREATED
        row.shopify_id = created.shopify_id
        row.error = None
        limited = (
            "limited to this customer" if incident.customer_id else "for any customer (none on the order)"
        )
        summary = (
            f"Discount code {row.code} created in the shop: {_describe(row)}, single use, {limited}, "
            f"valid until {row.ends_at:%Y-%m-%d}."
        )
        if created.existed:
            summary += " (An earlier attempt had already created it; the same code is used.)"
        if row.test:
            summary = "Test mode (real test codes on): " + summary
        add_timeline(
            session,
            incident,
            "code_created",
            summary,
            f"api:{created.mutation}",
            data={
                "code": row.code,
                "discount_id": created.shopify_id,
                "test": row.test,
                "existed": created.existed,
            },
        )
    return True


def _new_code_row(
    session: Session, secret_key: str, incident: Incident, shop: Shop, kind: KindSettings
) -> DiscountCode:
    row = DiscountCode(
        shop_id=shop.id,
        incident_id=incident.id,
        code=codes.derive(secret_key, incident.id),
        compensation=kind.compensation,
        value=None if kind.compensation == code_states.FREE_SHIPPING else Decimal(kind.value),
        currency=shop.currency,
        ends_at=utcnow() + timedelta(days=kind.expiry_days),
        state=code_states.PENDING,
        test=shop.test_mode,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        existing = session.scalar(select(DiscountCode).where(DiscountCode.incident_id == incident.id))
        assert existing is not None, "the code is unique per shop and derived per incident"
        return existing
    return row


def _spec(row: DiscountCode, incident: Incident, kind: KindSettings) -> CodeSpec:
    label = KIND_LABELS.get(incident.kind, incident.kind)
    marker = code_marker(incident.id)
    prefix = "[Test] " if row.test else ""
    return CodeSpec(
        code=row.code,
        title=f"{prefix}Apology for order {incident.order_name or incident.order_id} ({label}) {marker}",
        marker=marker,
        compensation=row.compensation,
        value=row.value,
        starts_at=utcnow().replace(microsecond=0),
        ends_at=row.ends_at or utcnow() + timedelta(days=kind.expiry_days),
        customer_id=incident.customer_id,
        minimum_order=kind.minimum_order,
        combines_with_order_discounts=kind.combines_with_order_discounts,
        combines_with_product_discounts=kind.combines_with_product_discounts,
        combines_with_shipping_discounts=kind.combines_with_shipping_discounts,
    )


def code_marker(incident_id: int) -> str:
    """In the discount's title: proves a TAKEN code is this incident's."""
    return f"[Amends #{incident_id}]"


def _code_failed(services: Services, incident_id: int, reason: str) -> None:
    with services.db.session() as session:
        incident = load_incident(session, incident_id)
        row = session.scalar(select(DiscountCode).where(DiscountCode.incident_id == incident_id))
        if row is not None:
            row.state = code_states.FAILED
            row.error = reason[:2000]
        flag(
            session,
            incident,
            reason + " No apology was sent; retry once the cause is fixed.",
            SOURCE,
            "code_failed",
        )


def _describe(row: DiscountCode) -> str:
    return emails.describe_discount(row.compensation, row.value, row.currency) or row.compensation


# ---------------------------------------------------------------------------------------------
# 3. The email


def _send(services: Services, plan: Plan) -> None:
    config = services.config

    def compose(session: Session, message: Message) -> tuple[sending.Envelope, emails.Rendered]:
        incident = load_incident(session, plan.incident_id)
        shop = load_shop(session, incident)
        settings = load(session, shop.id)
        kind = settings.kind(incident.kind)
        code = None
        if plan.with_code:
            code = session.scalar(select(DiscountCode).where(DiscountCode.incident_id == incident.id))
        context = emails.incident_context(
            shop=shop, incident=incident, code=code, minimum_order=kind.minimum_order
        )
        rendered = emails.render_email(kind, incident.kind, "apology", context)
        envelope = sending.Envelope(
            mail_from=sending.sender(config, shop),
            reply_to=shop.email,
            recipient=sending.customer_recipient(
                shop.test_mode, incident.customer_email, settings.shop.test_address
            ),
            headers={"X-Amends-Incident": str(incident.id)},
        )
        return envelope, rendered

    def on_sent(session: Session, message: Message, recipient: sending.Recipient) -> None:
        incident = load_incident(session, plan.incident_id)
        if incident.state == DETECTED:
            incident.state = APOLOGISED
        code = session.scalar(select(DiscountCode.code).where(DiscountCode.incident_id == incident.id))
        summary = f"Apology email accepted by the mail server for {recipient.label}"
        summary += f", with code {code}." if code and plan.with_code else ", without a discount code."
        if message.test:
            summary = (
                f"Test mode: {summary[0].lower()}{summary[1:]} It stands in for the email to "
                f"{mask_email(message.redirected_from)}."
            )
        add_timeline(
            session,
            incident,
            "apology_sent",
            summary,
            "smtp",
            data={
                "message_id": plan.message_id,
                "test": message.test,
                "code": code if plan.with_code else None,
            },
        )
        if incident.resolved_at is not None:
            # Resolved while the apology was on its way: the "fixed" notice decides for itself.
            enqueue_after_commit(
                session, services, NOTIFY_RESOLVED, incident.id, job_id=f"notify-{incident.id}"
            )

    try:
        sending.deliver(services, plan.message_id, compose, on_sent)
    except TemplateError as error:
        with services.db.session() as session:
            flag(
                session,
                load_incident(session, plan.incident_id),
                f"The apology template could not be rendered ({error}); fix it in the settings, then retry.",
                SOURCE,
                "email_failed",
            )
    except MailPermanentError as error:
        with services.db.session() as session:
            flag(
                session,
                load_incident(session, plan.incident_id),
                f"The mail server refused the apology for good ({error}).",
                "smtp",
                "email_failed",
            )
    except MailRetryableError as error:
        note(
            services,
            plan.incident_id,
            "email_deferred",
            f"The mail server did not take the apology yet ({error}); retrying.",
            "smtp",
        )
        raise


# ---------------------------------------------------------------------------------------------
# Retrying from the admin, and helpers the other jobs share


def retry(incident_id: int, requested_by: str = "staff") -> None:
    """Clear the incident's "needs attention" and run its unfinished steps again (the admin
    enqueues this by name once the cause is fixed: settings, template, scopes, mail server)."""
    services = current()
    with services.db.session() as session:
        incident = session.get(Incident, incident_id)
        if incident is None:
            return
        reason = incident.needs_attention
        # With "needs attention" cleared, the jobs take their failed code and messages up again.
        incident.needs_attention = None
        add_timeline(
            session,
            incident,
            "retry_requested",
            f"Retry requested by {requested_by}" + (f" (it needed attention: {reason})" if reason else "."),
            f"staff:{requested_by}",
        )
        stamp = int(time.time())
        enqueue_after_commit(
            session, services, SEND_APOLOGY, incident.id, job_id=f"apology-{incident.id}-r{stamp}"
        )
        enqueue_after_commit(
            session, services, OPEN_FOLLOW_UP, incident.id, job_id=f"followup-{incident.id}-r{stamp}"
        )
        if incident.resolved_at is not None:
            enqueue_after_commit(
                session, services, NOTIFY_RESOLVED, incident.id, job_id=f"notify-{incident.id}-r{stamp}"
            )


def flag(
    session: Session, incident: Incident, reason: str, source: str, event: str = "needs_attention"
) -> None:
    """Mark the incident for a person, with the reason, on the incident and its timeline."""
    incident.needs_attention = reason[:2000]
    add_timeline(session, incident, event, reason, source, data={"needs_attention": True})
    log.warning("incident %s needs attention: %s", incident.id, reason)


def note(services: Services, incident_id: int, event: str, summary: str, source: str = SOURCE) -> None:
    """A timeline entry in its own unit of work (for a step about to be retried)."""
    with services.db.session() as session:
        incident = session.get(Incident, incident_id)
        if incident is not None:
            add_timeline(session, incident, event, summary, source)


def load_incident(session: Session, incident_id: int) -> Incident:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise PermanentError(f"incident {incident_id} is gone")
    return incident


def load_shop(session: Session, incident: Incident) -> Shop:
    shop = session.get(Shop, incident.shop_id)
    if shop is None:
        raise PermanentError(f"shop {incident.shop_id} is gone")
    return shop


def _test(shop: Shop) -> dict[str, bool]:
    return {"test": True} if shop.test_mode else {}
