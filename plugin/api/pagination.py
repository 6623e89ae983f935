"""Opaque cursors: the sort key of the last item of a page, as URL-safe base64 JSON.

A cursor names a position, not an offset, so rows added while a merchant pages through a list
neither repeat nor go missing.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from plugin.errors import RequestError


def encode(*values: Any) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def decode(cursor: str, *types: type) -> list[Any]:
    """The values `encode` was given, checked against `types` (datetime, int, str)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != len(types):
            raise ValueError("wrong shape")
        return [_typed(value, kind) for value, kind in zip(values, types, strict=True)]
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise RequestError(
            422, "The cursor is not one this API gave out.", {"cursor": "is not valid"}
        ) from None


def _typed(value: Any, kind: type) -> Any:
    if kind is datetime:
        if not isinstance(value, str):
            raise ValueError("not a time")
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
            raise ValueError("not an id")
        return value
    if not isinstance(value, kind):
        raise ValueError("wrong type")
    return value
