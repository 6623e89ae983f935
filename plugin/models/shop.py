from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from plugin.db import Base, UTCDateTime, utcnow


class Shop(Base):
    """An installed (or once installed) store. Tokens are Fernet ciphertext, never clear."""

    __tablename__ = "shops"

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))  # the store's contact address
    currency: Mapped[str | None] = mapped_column(String(3))
    access_token: Mapped[bytes | None] = mapped_column(LargeBinary)
    access_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refresh_token: Mapped[bytes | None] = mapped_column(LargeBinary)
    refresh_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scopes: Mapped[str] = mapped_column(Text, default="")
    installed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    uninstalled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when a refresh failed for good: the merchant must open the app again.
    reauth_reason: Mapped[str | None] = mapped_column(Text)
    webhooks_registered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How the tokens were obtained: "oauth", "token_exchange" or "custom_app".
    installed_via: Mapped[str | None] = mapped_column(String(20))
    # A worker refreshing the token pair claims the row until then (the lock used when
    # there is no Redis); a crashed worker's claim simply expires.
    token_claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    test_mode: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def installed(self) -> bool:
        return self.installed_at is not None and self.uninstalled_at is None

    @property
    def store_handle(self) -> str:
        """The `{store}` of admin.shopify.com/store/{store}/…"""
        return self.domain.removesuffix(".myshopify.com")


class ShopSettings(Base):
    """Merchant settings, stored as the merchant's values merged over code defaults on read."""

    __tablename__ = "shop_settings"

    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True)
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
