from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from plugin.db import Base, UTCDateTime, utcnow

STARTING = "starting"  # tasks chosen; the bulk operation not yet known to have started
RUNNING = "running"
DONE = "done"
FAILED = "failed"
UNFINISHED = (STARTING, RUNNING)


class OrderTagBatch(Base):
    """Order tags added by one Shopify bulk mutation: in a storm, one call for many orders.
    `task_ids` are in the upload's line order (Shopify's results name lines by number)."""

    __tablename__ = "order_tag_batches"
    __table_args__ = (Index("ix_order_tag_batches_shop_state", "shop_id", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    tag: Mapped[str] = mapped_column(String(255))
    task_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    operation_id: Mapped[str | None] = mapped_column(String(255))  # Shopify's BulkOperation gid
    state: Mapped[str] = mapped_column(String(10), default=STARTING)
    error: Mapped[str | None] = mapped_column(Text)
    # Its job is `tag-batch-<id>-<round>`; a job of an older round does nothing (a duplicate).
    round: Mapped[int] = mapped_column(default=0)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
