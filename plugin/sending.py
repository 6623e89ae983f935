"""Each `Message` is sent once: a row per message, an expiring claim around the SMTP call.

The row's `message_id` is stable per incident and message kind (`<apology-42@app.host>`): it
is the RFC 5322 Message-ID and the unique key a retried job finds its message by.

    pending ──claim (sending_until = now + CLAIM)──▶ SMTP ──accepted──▶ sent
       ▲                │                             │
       └── 4xx: claim released, error kept, job retries ┘ 5xx ──▶ failed (needs a person)
    pending ──decided not to send──▶ skipped (with the reason)

A claim is taken with one conditional UPDATE, so two workers never both hold it; a worker that
dies holding it loses it when it expires, and the next attempt sends with the same Message-ID.
The content is rendered once, stored on the row, and re-sent as stored. The only window for a
duplicate is a crash after the server accepted the message and before "sent" was committed:
the resend carries the same Message-ID, which mail clients use to fold duplicates. (A database
that is unreachable at that moment is waited for, inside the claim: no resend.)

Test mode: the message goes to the shop's test address, or into the local outbox when there
is none, and is marked as a test on the row, in the subject and in a header.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from email.utils import formataddr, parseaddr
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from plugin.config import Config
from plugin.db import utcnow
from plugin.emails import Rendered
from plugin.errors import ClaimHeldError, MailPermanentError, MailRetryableError
from plugin.logs import mask_email
from plugin.mailer import Email, OutboxTransport, Transport
from plugin.models import Message, Shop
from plugin.models.message import FAILED, PENDING, SENT, SKIPPED
from plugin.services import Services

log = logging.getLogger(__name__)

CLAIM_SECONDS = 120  # well over the SMTP timeout: a live sender always finishes first
# How long an accepted message's "sent" is retried against an unreachable database: inside the
# claim, so no other worker can send it meanwhile.
RECORD_SENT_SECONDS = CLAIM_SECONDS - 30
TEST_SUBJECT_PREFIX = "[Test] "


@dataclass(frozen=True)
class Recipient:
    """Where a customer email goes: `to`, and in test mode the customer it stands in for."""

    to: str | None
    redirected_from: str | None = None
    test: bool = False
    outbox: bool = False  # test mode without a test address: the local outbox

    @property
    def label(self) -> str:
        if self.outbox:
            return "the local outbox (test mode)"
        if self.test:
            return f"the test address {mask_email(self.to)} (test mode)"
        return mask_email(self.to)


def customer_recipient(test_mode: bool, customer_email: str | None, test_address: str | None) -> Recipient:
    if not test_mode:
        return Recipient(to=customer_email)
    placeholder = customer_email or "customer@example.invalid"
    if test_address:
        return Recipient(to=test_address, redirected_from=customer_email, test=True)
    return Recipient(to=placeholder, redirected_from=customer_email, test=True, outbox=True)


def message_id_for(config: Config, kind: str, key: int | str) -> str:
    host = urlsplit(config.app_url).hostname or "amends.invalid"
    return f"<{kind}-{key}@{host}>"


def sender(config: Config, shop: Shop) -> str:
    """`From`: MAIL_FROM's address with the store's name as the display name."""
    display, address = parseaddr(config.mail_from)
    return formataddr((shop.name or display or shop.domain, address))


def find(session: Session, message_id: str) -> Message | None:
    return session.scalar(select(Message).where(Message.message_id == message_id))


def get_or_create(
    session: Session, *, shop_id: int, incident_id: int | None, kind: str, message_id: str
) -> Message:
    """The message row, created pending when it does not exist yet (safe against a racing
    worker creating it at the same moment)."""
    message = find(session, message_id)
    if message is not None:
        return message
    try:
        with session.begin_nested():
            message = Message(
                shop_id=shop_id, incident_id=incident_id, kind=kind, message_id=message_id, state=PENDING
            )
            session.add(message)
    except IntegrityError:
        message = find(session, message_id)
        assert message is not None
    return message


def skip(message: Message, reason: str) -> None:
    message.state = SKIPPED
    message.error = reason
    message.sending_until = None


@dataclass(frozen=True)
class Envelope:
    mail_from: str
    reply_to: str | None
    recipient: Recipient
    headers: dict[str, str]


Composer = Callable[[Session, Message], tuple[Envelope, Rendered]]


@dataclass(frozen=True)
class Outcome:
    state: str  # "sent" (by this call), "already_sent", "skipped" or "failed"
    message_id: str
    recipient: Recipient | None = None


def deliver(
    services: Services,
    message_id: str,
    compose: Composer,
    on_sent: Callable[[Session, Message, Recipient], None] | None = None,
) -> Outcome:
    """Send the pending message `message_id` once.

    `compose(session, message)` returns its envelope and content the first time (inside the
    claim); later attempts re-send what was stored. `on_sent(session, message, recipient)` runs
    in the same unit of work that marks the message sent (the timeline entry and the incident's
    state change with it, or not at all). Raises `ClaimHeldError` while another
    worker holds the claim, `MailRetryableError` (claim released) on SMTP 4xx or a lost
    connection, `MailPermanentError` (message failed) on SMTP 5xx, and whatever `compose`
    raises (the claim is never committed then).
    """
    now = utcnow()
    with services.db.session() as session:
        result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(Message)
            .where(
                Message.message_id == message_id,
                Message.state == PENDING,
                or_(Message.sending_until.is_(None), Message.sending_until < now),
            )
            .values(sending_until=now + timedelta(seconds=CLAIM_SECONDS), attempts=Message.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        claimed = result.rowcount
        message = find(session, message_id)
        if message is None:
            raise LookupError(f"no message {message_id}")
        if not claimed:
            if message.state == SENT:
                return Outcome("already_sent", message_id)
            if message.state in (SKIPPED, FAILED):
                return Outcome(message.state, message_id)
            held = (message.sending_until - now).total_seconds() if message.sending_until else 1.0
            raise ClaimHeldError(f"message {message_id} is being sent by another worker", retry_after=held)
        session.refresh(message)
        attempt = message.attempts
        # Raising here rolls the claim back with everything else.
        envelope, rendered = compose(session, message)
        if message.subject is None:
            subject = rendered.subject
            if envelope.recipient.test and not subject.startswith(TEST_SUBJECT_PREFIX):
                subject = TEST_SUBJECT_PREFIX + subject
            message.subject = subject
            message.text_body = rendered.text
            message.html_body = rendered.html
            message.to_address = envelope.recipient.to
            message.redirected_from = envelope.recipient.redirected_from
            message.test = envelope.recipient.test
        email = Email(
            to=message.to_address or "",
            subject=message.subject,
            text=message.text_body or "",
            html=message.html_body,
            mail_from=envelope.mail_from,
            reply_to=envelope.reply_to,
            message_id=message_id,
            shop_id=message.shop_id,
            headers={**envelope.headers, **({"X-Amends-Test": "yes"} if message.test else {})},
        )
        recipient = envelope.recipient
    transport: Transport = OutboxTransport(services.db) if recipient.outbox else services.mailer
    try:
        transport.send(email)
    except MailRetryableError as error:
        _release(services, message_id, attempt, str(error))
        raise
    except MailPermanentError as error:
        with services.db.session() as session:
            failed = find(session, message_id)
            if failed is not None and failed.state == PENDING:
                failed.state = FAILED
                failed.error = str(error)[:2000]
                failed.sending_until = None
        raise
    except Exception:
        _release(services, message_id, attempt, "the mail transport failed unexpectedly")
        raise
    _record_sent(services, message_id, recipient, on_sent)
    log.info("message %s accepted for %s", message_id, recipient.label)
    return Outcome("sent", message_id, recipient)


def _record_sent(
    services: Services,
    message_id: str,
    recipient: Recipient,
    on_sent: Callable[[Session, Message, Recipient], None] | None,
) -> None:
    """Mark the accepted message sent. The server has it now: if the database is unreachable
    (an outage, a failover), keep trying while our claim holds, rather than fail the job and
    have the message sent again once the claim expires."""
    deadline = time.monotonic() + RECORD_SENT_SECONDS
    wait = 0.5
    while True:
        try:
            with services.db.session() as session:
                sent = find(session, message_id)
                assert sent is not None
                sent.state = SENT
                sent.sent_at = utcnow()
                sent.sending_until = None
                sent.error = None
                if on_sent is not None:
                    on_sent(session, sent, recipient)
            return
        except (OperationalError, InterfaceError):
            if time.monotonic() + wait > deadline:
                raise
            log.warning("message %s accepted; the database is unreachable, retrying to record it", message_id)
            time.sleep(wait)
            wait = min(wait * 2, 5.0)


def _release(services: Services, message_id: str, attempt: int, error: str | None) -> None:
    """Give the claim back, unless a later attempt has taken it since."""
    with services.db.session() as session:
        session.execute(
            update(Message)
            .where(Message.message_id == message_id, Message.state == PENDING, Message.attempts == attempt)
            .values(sending_until=None, **({"error": error[:2000]} if error else {}))
            .execution_options(synchronize_session=False)
        )


def reset_failed(message: Message) -> None:
    """Back to pending (a person asked for a retry): the content is rendered afresh."""
    if message.state in (FAILED, PENDING):
        message.state = PENDING
        message.sending_until = None
        message.subject = message.text_body = message.html_body = None
        message.error = None
