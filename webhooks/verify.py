"""Pure verification of a webhook delivery: raw body + headers in, a verdict out."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import Headers

SHOP_DOMAIN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]*\.myshopify\.com$")

# Why a delivery was refused → the HTTP status Shopify gets. 401 for anything about the
# signature (App Store review rejects other codes there), 400 for a signed but malformed one.
STATUS = {
    "missing_hmac": 401,
    "bad_signature": 401,
    "missing_topic": 400,
    "missing_shop": 400,
    "bad_shop_domain": 400,
    "missing_webhook_id": 400,
    "bad_header": 400,
    "bad_encoding": 400,
    "not_json": 400,
    "not_an_object": 400,
}


# The longest value each header may have (the columns that keep them); longer or
# non-printable values are refused rather than failing the insert with a 5xx.
HEADER_LIMITS = {
    "X-Shopify-Topic": 100,
    "X-Shopify-Shop-Domain": 255,
    "X-Shopify-Webhook-Id": 255,
    "X-Shopify-Event-Id": 255,
    "X-Shopify-API-Version": 20,
}


@dataclass(frozen=True)
class Verified:
    topic: str
    shop_domain: str
    webhook_id: str
    payload: dict[str, Any]
    api_version: str | None = None
    event_id: str | None = None
    triggered_at: str | None = None


@dataclass(frozen=True)
class Rejected:
    reason: str

    @property
    def status(self) -> int:
        return STATUS[self.reason]


def sign(body: bytes, secret: str) -> str:
    """The X-Shopify-Hmac-Sha256 value Shopify sends for `body`."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signature_ok(body: bytes, given: str, secrets: Iterable[str]) -> bool:
    # Each secret is compared in constant time, and every one is tried, during rotation.
    matches = [hmac.compare_digest(sign(body, secret).encode(), given.encode()) for secret in secrets]
    return any(matches)


def verify(body: bytes, headers: Mapping[str, str] | Headers, secrets: Iterable[str]) -> Verified | Rejected:
    """Signature first, so an unsigned request learns nothing about what else is wrong."""
    given = (headers.get("X-Shopify-Hmac-Sha256") or "").strip()
    if not given:
        return Rejected("missing_hmac")
    if not given.isascii() or not signature_ok(body, given, secrets):
        return Rejected("bad_signature")
    for name, limit in HEADER_LIMITS.items():
        value = headers.get(name)
        if value is not None and (len(value) > limit or not value.isprintable()):
            return Rejected("bad_header")
    topic = (headers.get("X-Shopify-Topic") or "").strip()
    if not topic:
        return Rejected("missing_topic")
    shop = (headers.get("X-Shopify-Shop-Domain") or "").strip().lower()
    if not shop:
        return Rejected("missing_shop")
    if not SHOP_DOMAIN.match(shop):
        return Rejected("bad_shop_domain")
    webhook_id = (headers.get("X-Shopify-Webhook-Id") or "").strip()
    if not webhook_id:
        return Rejected("missing_webhook_id")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return Rejected("bad_encoding")
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        # RecursionError: a signed body nested thousands of levels deep.
        return Rejected("not_json")
    if not isinstance(payload, dict):
        return Rejected("not_an_object")
    return Verified(
        topic=topic,
        shop_domain=shop,
        webhook_id=webhook_id[:255],
        payload=payload,
        api_version=headers.get("X-Shopify-API-Version"),
        event_id=headers.get("X-Shopify-Event-Id"),
        triggered_at=headers.get("X-Shopify-Triggered-At"),
    )
