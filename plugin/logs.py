"""Logging set-up and the helpers that keep personal data and secrets out of log lines."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str = "INFO") -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_amends", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._amends = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)


def mask_email(address: str | None) -> str:
    """ "jane.doe@example.com" → "j***@example.com": enough to trace, not enough to identify."""
    if not address:
        return "<none>"
    local, _, domain = address.rpartition("@")
    if not local:
        return "***"
    return f"{local[0]}***@{domain}"
