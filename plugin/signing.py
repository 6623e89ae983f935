"""Shopify's webhook signature: base64 HMAC-SHA256 of the raw body, keyed with the secret."""

from __future__ import annotations

import base64
import hashlib
import hmac


def webhook_signature(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
