from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from plugin.db import Base, UTCDateTime, utcnow

PENDING = "pending"
DONE = "done"
IGNORED = "ignored"
FAILED = "failed"


class Delivery(Base):
    """One webhook delivery, recorded before it is answered. Unique on Shopify's webhook id."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_state_received", "state", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(255), unique=True)
    topic: Mapped[str] = mapped_column(String(100))
    shop_domain: Mapped[str] = mapped_column(String(255), index=True)
    shop_id: Mapped[int | None] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    event_id: Mapped[str | None] = mapped_column(String(255))
    api_version: Mapped[str | None] = mapped_column(String(20))
    triggered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    state: Mapped[str] = mapped_column(String(20), default=PENDING)
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    payload: Mapped[str | None] = mapped_column(Text)  # raw body; erased on redact
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
