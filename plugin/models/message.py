from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from plugin.db import Base, UTCDateTime, utcnow

APOLOGY = "apology"
FIXED = "fixed"
STAFF = "staff"

PENDING = "pending"
SENT = "sent"
SKIPPED = "skipped"
FAILED = "failed"


class Message(Base):
    """An email Amends sends (or decided not to send) for an incident.

    `message_id` is stable per incident and kind: it is both the RFC 5322 Message-ID and the
    unique key that makes a retried job find the message it already sent.
    """

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20))
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    state: Mapped[str] = mapped_column(String(20), default=PENDING)
    to_address: Mapped[str | None] = mapped_column(String(320))
    # In test mode the message goes to the merchant's test address (or the outbox) instead.
    redirected_from: Mapped[str | None] = mapped_column(String(320))
    test: Mapped[bool] = mapped_column(default=False)
    subject: Mapped[str | None] = mapped_column(Text)
    text_body: Mapped[str | None] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    # A claim taken before the SMTP call; it expires so a crashed sender never holds it forever.
    sending_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxEmail(Base):
    """The local outbox: mail that would have gone out, when no SMTP_URL is set."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int | None] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    mail_from: Mapped[str] = mapped_column(Text)
    to_address: Mapped[str] = mapped_column(Text)
    reply_to: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
