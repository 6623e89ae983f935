"""Each shop's Admin API budget, shared by every worker.

Owned by the actions work (per-shop budget through Redis). This first version only keeps
the shape: `acquire` before a call, `observe` what Shopify reports, `drain` on THROTTLED.
"""

from __future__ import annotations

from plugin.services import Services


def acquire(services: Services, shop: str, points: float) -> None:
    return None


def observe(
    services: Services, shop: str, available: float, maximum: float | None, restore_rate: float | None
) -> None:
    return None


def drain(services: Services, shop: str, available: float | None, restore_rate: float | None) -> None:
    return None
