from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from plugin.db import Base, UTCDateTime, utcnow

OPEN = "open"
DONE = "done"


class Task(Base):
    """The merchant team's follow-up for one incident."""

    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_shop_status_due", "shop_id", "status", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), unique=True)
    title: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default=OPEN)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    assignee: Mapped[str | None] = mapped_column(String(255))
    notes: Mapped[str | None] = mapped_column(Text)
    order_tagged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when the tag waited out a storm; the bulk mutation that carries it, once chosen.
    order_tag_deferred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    order_tag_batch_id: Mapped[int | None] = mapped_column(
        ForeignKey("order_tag_batches.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(255))
