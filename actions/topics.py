"""The one table from Shopify topic to the job that handles it, and which payloads need
no work at all (the receiver answers those without recording them)."""

from __future__ import annotations

from typing import Any

# topic → dotted path of the handler, called as handler(session, shop, delivery, payload)
HANDLERS: dict[str, str] = {}

COMPLIANCE_TOPICS = ("customers/data_request", "customers/redact", "shop/redact")


def is_known(topic: str) -> bool:
    return topic in HANDLERS


def skip_reason(topic: str, payload: dict[str, Any]) -> str | None:
    """None when the delivery needs work; otherwise why it does not."""
    if topic not in HANDLERS:
        return f"topic {topic} is not handled by Amends"
    return None
