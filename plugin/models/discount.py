from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, ForeignKey, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from plugin.db import Base, UTCDateTime, utcnow

PERCENTAGE = "percentage"
FIXED_AMOUNT = "fixed_amount"
FREE_SHIPPING = "free_shipping"

PENDING = "pending"
CREATED = "created"
TEST = "test"  # test mode: recorded, not created in the shop
FAILED = "failed"


class DiscountCode(Base):
    """The one apology code of an incident. `code` is derived from the incident and a secret,
    so a retried job proposes the same code and can never mint a second one."""

    __tablename__ = "discount_codes"
    __table_args__ = (UniqueConstraint("shop_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), unique=True)
    code: Mapped[str] = mapped_column(String(64))
    shopify_id: Mapped[str | None] = mapped_column(String(100))  # gid://shopify/DiscountCodeNode/…
    compensation: Mapped[str] = mapped_column(String(20))
    value: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    currency: Mapped[str | None] = mapped_column(String(3))
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(20), default=PENDING)
    test: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(Text)
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    redeemed_order_id: Mapped[int | None] = mapped_column(BigInteger)
    redeemed_order_name: Mapped[str | None] = mapped_column(String(100))
    redeemed_amount: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    redeemed_currency: Mapped[str | None] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
