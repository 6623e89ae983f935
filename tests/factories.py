"""Shops, signed webhooks and other things tests need, built with real code paths."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from plugin.db import utcnow
from plugin.models import Shop
from plugin.services import Services
from plugin.signing import webhook_signature

SHOP = "calm-coffee.myshopify.com"
OTHER_SHOP = "other-store.myshopify.com"


def make_shop(
    services: Services,
    domain: str = SHOP,
    token: str = "shpat_test_token",  # noqa: S107
    test_mode: bool = False,
    expires_in: timedelta | None = None,
    refresh_token: str | None = None,
    **fields: Any,
) -> Shop:
    with services.db.session() as session:
        shop = session.scalar(select(Shop).where(Shop.domain == domain))
        if shop is None:
            shop = Shop(domain=domain)
            session.add(shop)
        shop.name = fields.pop("name", "Calm Coffee")
        shop.email = fields.pop("email", "hello@calm-coffee.example")
        shop.currency = fields.pop("currency", "USD")
        shop.scopes = ",".join(services.config.scopes)
        shop.installed_at = utcnow()
        shop.uninstalled_at = None
        shop.test_mode = test_mode
        shop.access_token = services.cipher.encrypt(token)
        shop.access_token_expires_at = utcnow() + expires_in if expires_in else None
        if refresh_token:
            shop.refresh_token = services.cipher.encrypt(refresh_token)
            shop.refresh_token_expires_at = utcnow() + timedelta(days=90)
        for name, value in fields.items():
            setattr(shop, name, value)
    return shop


def signed_webhook(
    topic: str,
    payload: dict[str, Any] | bytes,
    secret: str,
    shop: str = SHOP,
    webhook_id: str | None = None,
    **extra_headers: str,
) -> tuple[bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-Hmac-Sha256": webhook_signature(body, secret),
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-Event-Id": str(uuid.uuid4()),
        "X-Shopify-API-Version": "2026-07",
        "X-Shopify-Triggered-At": utcnow().isoformat(),
    }
    headers.update(extra_headers)
    return body, headers
