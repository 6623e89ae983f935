"""Shop domains: only `name.myshopify.com` is a shop."""

from __future__ import annotations

import re

SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")


def valid_shop_domain(value: str | None) -> bool:
    return bool(value) and SHOP_DOMAIN.fullmatch(value or "") is not None
