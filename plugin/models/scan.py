from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from plugin.db import Base, UTCDateTime, utcnow

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"


class ScanRun(Base):
    """One late-delivery scan of one shop: when, what it found, and the query points it used.

    `slot` names the run ("2026-11-22T13:00" for a scheduled one, "cli-…" for one started by
    hand); it is unique per shop, so two schedulers can never enqueue the same run twice."""

    __tablename__ = "scan_runs"
    __table_args__ = (UniqueConstraint("shop_id", "slot"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    slot: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(10), default=QUEUED)
    pages: Mapped[int] = mapped_column(default=0)
    shipments: Mapped[int] = mapped_column(default=0)  # open (not delivered) shipments seen
    late: Mapped[int] = mapped_column(default=0)
    opened: Mapped[int] = mapped_column(default=0)  # incidents opened or joined
    points: Mapped[float] = mapped_column(Float, default=0.0)  # actual query cost, as Shopify reported
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
