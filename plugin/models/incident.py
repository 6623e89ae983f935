from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from plugin.db import Base, UTCDateTime, utcnow

LATE_DELIVERY = "late_delivery"
RETURN = "return"
REFUND = "refund"
KINDS = (LATE_DELIVERY, RETURN, REFUND)

# detected → apologised → resolved → customer_told
DETECTED = "detected"
APOLOGISED = "apologised"
RESOLVED = "resolved"
CUSTOMER_TOLD = "customer_told"
STATES = (DETECTED, APOLOGISED, RESOLVED, CUSTOMER_TOLD)


class Incident(Base):
    """One thing that went wrong with one order."""

    __tablename__ = "incidents"
    __table_args__ = (
        # One open incident per order and kind: `open_key` is "{order_id}:{kind}" while open
        # and NULL once resolved (NULLs never collide on either engine).
        UniqueConstraint("shop_id", "open_key"),
        Index("ix_incidents_shop_opened", "shop_id", "opened_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), default=DETECTED)
    open_key: Mapped[str | None] = mapped_column(String(100))
    order_id: Mapped[int] = mapped_column(BigInteger)
    order_name: Mapped[str | None] = mapped_column(String(100))
    customer_id: Mapped[int | None] = mapped_column(BigInteger)
    customer_first_name: Mapped[str | None] = mapped_column(String(255))
    customer_email: Mapped[str | None] = mapped_column(String(320), index=True)
    customer_locale: Mapped[str | None] = mapped_column(String(20))
    marketing_consent: Mapped[bool | None] = mapped_column()
    # What happened, in the customer's terms (e.g. "your parcel is delayed"), plus details
    # such as tracking numbers, return reasons and refund amounts.
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Protected fields Shopify withheld (e.g. ["email"]): explains a missing apology.
    missing: Mapped[list[str]] = mapped_column(JSON, default=list)
    needs_attention: Mapped[str | None] = mapped_column(Text)
    # The time of the newest signal applied, to ignore older ones that arrive late.
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    timeline: Mapped[list[TimelineEntry]] = relationship(
        back_populates="incident", order_by="TimelineEntry.id", cascade="all, delete-orphan"
    )

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class IncidentKey(Base):
    """A business key (refund id, return id, fulfillment event id) already applied to an
    incident. Unique per shop, so a redelivery under a new webhook id changes nothing."""

    __tablename__ = "incident_keys"
    __table_args__ = (UniqueConstraint("shop_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Settlement(Base):
    """Something that finished (a shipment delivered, a return closed) and when it happened,
    kept even when no incident was open, so that a signal from before that time which
    arrives late (webhooks come out of order) cannot open an incident for it.
    `key` is "shipment:<fulfillment id>" or "return:<return id>"."""

    __tablename__ = "settlements"
    __table_args__ = (UniqueConstraint("shop_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TimelineEntry(Base):
    """One step in an incident's story, with its time and its cause."""

    __tablename__ = "timeline_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    event: Mapped[str] = mapped_column(String(50))  # e.g. "detected", "code_created", "email_sent"
    summary: Mapped[str] = mapped_column(Text)
    # The cause: "webhook:refunds/create", "job:send_apology", "api:discountCodeBasicCreate", "staff"
    source: Mapped[str] = mapped_column(String(100))
    webhook_id: Mapped[str | None] = mapped_column(String(255))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    incident: Mapped[Incident] = relationship(back_populates="timeline")
