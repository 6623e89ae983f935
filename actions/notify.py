"""notify_resolved(incident_id): the "it's fixed" email, once per incident.

Enqueued by `plugin.incidents.resolve()` when an incident resolves (delivered, return
closed, task closed by staff), and by the apology job when the incident resolved while its
apology was on the way. It refers back to the apology (as a reply to its Message-ID, and by
date) and reminds the customer of the code when it has not been used.

No apology, no "fixed" email: a customer who was never told about a problem is not told it
is over. The email waits while the apology is still being sent, and is skipped (with the
reason on the timeline) when the apology was skipped or failed, when the kind has the notice
turned off, or when the incident was resolved automatically on opening (the apology covered
it: a refund the merchant resolves at once).
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from actions.apology import AUTO_RESOLVED, KIND_PLURALS, flag, load_incident, load_shop, note
from plugin import emails, sending
from plugin.errors import MailPermanentError, MailRetryableError, TemplateError
from plugin.incidents import add_timeline
from plugin.logs import mask_email
from plugin.models import DiscountCode, Incident, Message, Shop
from plugin.models import discount as code_states
from plugin.models.incident import CUSTOMER_TOLD
from plugin.models.message import APOLOGY, FAILED, FIXED, PENDING, SENT
from plugin.services import Services, current
from plugin.settings import load

log = logging.getLogger(__name__)

SOURCE = "job:notify_resolved"


def notify_resolved(incident_id: int) -> None:
    services = current()
    message_id = _decide(services, incident_id)
    if message_id is not None:
        _send(services, incident_id, message_id)


def _decide(services: Services, incident_id: int) -> str | None:
    """The "fixed" message to send, or None (not resolved, decided before, waiting, skipped)."""
    config = services.config
    with services.db.session() as session:
        incident = session.get(Incident, incident_id)
        if incident is None or incident.resolved_at is None:
            return None
        shop = session.get(Shop, incident.shop_id)
        if shop is None or not shop.installed:
            return None
        message_id = sending.message_id_for(config, FIXED, incident.id)
        message = sending.find(session, message_id)
        if message is not None and message.state == FAILED and incident.needs_attention is None:
            sending.reset_failed(message)  # a person cleared "needs attention": try again
        if message is not None:
            return message_id if message.state == PENDING else None
        apology = sending.find(session, sending.message_id_for(config, APOLOGY, incident.id))
        if apology is None or apology.state == PENDING:
            log.info("incident %s: the fixed notice waits for the apology", incident.id)
            return None  # the apology job enqueues this again once it has sent
        kind = load(session, shop.id).kind(incident.kind)
        reason = None
        if not kind.notify_resolved:
            label = KIND_PLURALS.get(incident.kind, incident.kind)
            reason = f'The "it\'s fixed" email is turned off for {label} in the settings.'
        elif apology.state != SENT:
            reason = 'No apology went out for this incident, so no "it\'s fixed" email either.'
        elif incident.resolved_by == AUTO_RESOLVED:
            reason = (
                "The incident was resolved automatically when it was opened (as the settings ask), "
                'so the apology covered it: no "it\'s fixed" email.'
            )

        message = sending.get_or_create(
            session, shop_id=shop.id, incident_id=incident.id, kind=FIXED, message_id=message_id
        )
        message.test = shop.test_mode or apology.test
        if reason is not None:
            sending.skip(message, reason)
            add_timeline(session, incident, "fixed_skipped", reason, SOURCE)
            return None
        return message_id


def _send(services: Services, incident_id: int, message_id: str) -> None:
    config = services.config
    apology_id = sending.message_id_for(config, APOLOGY, incident_id)

    def compose(session: Session, message: Message) -> tuple[sending.Envelope, emails.Rendered]:
        incident = load_incident(session, incident_id)
        shop = load_shop(session, incident)
        settings = load(session, shop.id)
        kind = settings.kind(incident.kind)
        apology = sending.find(session, apology_id)
        code = session.scalar(select(DiscountCode).where(DiscountCode.incident_id == incident.id))
        if code is not None and code.state not in (code_states.CREATED, code_states.TEST):
            code = None
        context = emails.incident_context(
            shop=shop,
            incident=incident,
            code=code,
            minimum_order=kind.minimum_order,
            apology_sent_at=apology.sent_at if apology else None,
        )
        rendered = emails.render_email(kind, incident.kind, "fixed", context)
        # A test apology is followed by a test notice, whatever the mode is now.
        recipient = sending.customer_recipient(
            shop.test_mode or message.test, incident.customer_email, settings.shop.test_address
        )
        envelope = sending.Envelope(
            mail_from=sending.sender(config, shop),
            reply_to=shop.email,
            recipient=recipient,
            headers={
                "In-Reply-To": apology_id,
                "References": apology_id,
                "X-Amends-Incident": str(incident.id),
            },
        )
        return envelope, rendered

    def on_sent(session: Session, message: Message, recipient: sending.Recipient) -> None:
        incident = load_incident(session, incident_id)
        incident.state = CUSTOMER_TOLD
        code = session.scalar(select(DiscountCode).where(DiscountCode.incident_id == incident.id))
        summary = f'"It\'s fixed" email accepted by the mail server for {recipient.label}'
        if (
            code is not None
            and code.redeemed_at is None
            and code.state in (code_states.CREATED, code_states.TEST)
        ):
            summary += f", reminding them of the unused code {code.code}."
        else:
            summary += "."
        if message.test:
            summary = (
                f"Test mode: {summary} It stands in for the email to {mask_email(message.redirected_from)}."
            )
        add_timeline(
            session,
            incident,
            "fixed_sent",
            summary,
            "smtp",
            data={"message_id": message_id, "test": message.test},
        )

    try:
        sending.deliver(services, message_id, compose, on_sent)
    except TemplateError as error:
        with services.db.session() as session:
            flag(
                session,
                load_incident(session, incident_id),
                f'The "it\'s fixed" template could not be rendered ({error}); '
                "fix it in the settings, then retry.",
                SOURCE,
                "fixed_failed",
            )
        return
    except MailPermanentError as error:
        with services.db.session() as session:
            flag(
                session,
                load_incident(session, incident_id),
                f'The mail server refused the "it\'s fixed" email for good ({error}).',
                "smtp",
                "fixed_failed",
            )
        return
    except MailRetryableError as error:
        note(
            services,
            incident_id,
            "fixed_deferred",
            f'The mail server did not take the "it\'s fixed" email yet ({error}); retrying.',
            "smtp",
        )
        raise
