"""Mail out: SMTP from SMTP_URL, or the local outbox when none is set.

The rest of Amends builds an `Email` and calls `transport.send(email)`; it never sees SMTP.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol
from urllib.parse import unquote, urlsplit

from sqlalchemy.exc import IntegrityError

from plugin.db import Database
from plugin.errors import MailPermanentError, MailRetryableError
from plugin.logs import mask_email
from plugin.models import OutboxEmail

log = logging.getLogger(__name__)

SMTP_TIMEOUT_SECONDS = 15


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    text: str
    mail_from: str
    message_id: str  # "<…@…>": stable, so a resend is recognisable as the same message
    html: str | None = None
    reply_to: str | None = None
    shop_id: int | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def to_mime(self) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.mail_from
        message["To"] = self.to
        message["Subject"] = self.subject
        message["Message-ID"] = self.message_id
        message["Date"] = formatdate(localtime=False)
        if self.reply_to:
            message["Reply-To"] = self.reply_to
        for name, value in self.headers.items():
            message[name] = value
        message.set_content(self.text)
        if self.html:
            message.add_alternative(self.html, subtype="html")
        return message


class Transport(Protocol):
    kind: str

    def send(self, email: Email) -> None: ...


class SmtpTransport:
    """smtp:// upgrades with STARTTLS when the server offers it; smtps:// is implicit TLS."""

    kind = "smtp"

    def __init__(self, url: str, timeout: float = SMTP_TIMEOUT_SECONDS):
        parts = urlsplit(url)
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (465 if self.implicit_tls else 587)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self._tls: ssl.SSLContext | None = None

    @property
    def tls(self) -> ssl.SSLContext:
        """Built once, and only for TLS: loading the CA bundle costs ~20 ms of CPU, more than
        the rest of an apology's sending together."""
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def send(self, email: Email) -> None:
        try:
            with self._connect() as smtp:
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(email.to_mime())
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            raise _classify(min(codes), f"recipient refused ({codes})") from error
        except smtplib.SMTPResponseException as error:
            raise _classify(error.smtp_code, _reply_text(error.smtp_error)) from error
        except (smtplib.SMTPException, OSError) as error:
            # Disconnects, refusals and timeouts pass: retry.
            raise MailRetryableError(f"SMTP connection failed: {type(error).__name__}") from error
        log.info("mail %s accepted by %s for %s", email.message_id, self.host, mask_email(email.to))

    def _connect(self) -> smtplib.SMTP:
        if self.implicit_tls:
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self.tls)
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        smtp.ehlo()
        if smtp.has_extn("starttls"):
            smtp.starttls(context=self.tls)
            smtp.ehlo()
        return smtp


def _reply_text(raw: bytes | str) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def _classify(code: int, text: str) -> MailRetryableError | MailPermanentError:
    if 400 <= code < 500:
        return MailRetryableError(f"SMTP {code}: {text}")
    return MailPermanentError(f"SMTP {code}: {text}")


class OutboxTransport:
    """Stores each message in the database and prints it in the dev log. Idempotent on the
    Message-ID, like a mail server that has already accepted it."""

    kind = "outbox"

    def __init__(self, db: Database):
        self.db = db

    def send(self, email: Email) -> None:
        try:
            with self.db.session() as session:
                session.add(
                    OutboxEmail(
                        shop_id=email.shop_id,
                        message_id=email.message_id,
                        mail_from=email.mail_from,
                        to_address=email.to,
                        reply_to=email.reply_to,
                        subject=email.subject,
                        text_body=email.text,
                        html_body=email.html,
                    )
                )
        except IntegrityError:
            log.info("outbox already holds %s", email.message_id)
            return
        log.info("outbox: %r to %s (%s)", email.subject, mask_email(email.to), email.message_id)


def make_transport(smtp_url: str | None, db: Database) -> Transport:
    return SmtpTransport(smtp_url) if smtp_url else OutboxTransport(db)
