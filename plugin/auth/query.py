"""Requests Shopify signs in their query string (the OAuth callback, the app home's first
load): pure checks that return `Signed` or `Refused(reason)`.

The signature is the hex HMAC-SHA256, keyed with the client secret, of every parameter but
`hmac` (and the legacy `signature`), as sorted `key=value` pairs joined by `&`; a repeated
key counts as `key=["a", "b"]`. `%`, `&` and `=` are escaped so no value can pose as another
parameter. Each secret is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

from werkzeug.datastructures import MultiDict

from plugin.auth.shops import valid_shop_domain

# Shopify's redirect is followed at once; allow some clock skew either way.
MAX_AGE_SECONDS = 600
MAX_FUTURE_SECONDS = 60

# Why a signed request was refused → HTTP status and what the page says.
REFUSALS: dict[str, tuple[int, str]] = {
    "missing_params": (400, "The request from Shopify is incomplete"),
    "bad_shop_domain": (400, "That is not a Shopify store address"),
    "bad_hmac": (401, "The request's signature does not match: it did not come from Shopify"),
    "bad_timestamp": (401, "The request is too old (or its time is wrong): start again from Shopify"),
    "missing_state": (401, "This install was not started from this browser, or it took too long"),
    "state_mismatch": (401, "The install's security check (state) does not match"),
}


@dataclass(frozen=True)
class Signed:
    shop: str


@dataclass(frozen=True)
class Refused:
    reason: str
    detail: str = ""

    @property
    def status(self) -> int:
        return REFUSALS[self.reason][0]

    @property
    def message(self) -> str:
        return REFUSALS[self.reason][1]


def signature(args: MultiDict[str, str], secret: str) -> str:
    """The `hmac` value Shopify sends with `args`."""
    pairs = []
    for key in args:
        if key in ("hmac", "signature"):
            continue
        values = args.getlist(key)
        name = key.removesuffix("[]")
        value = json.dumps(values) if key.endswith("[]") or len(values) > 1 else values[0]
        name = name.replace("%", "%25").replace("=", "%3D").replace("&", "%26")
        value = value.replace("%", "%25").replace("&", "%26")
        pairs.append(f"{name}={value}")
    message = "&".join(sorted(pairs))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def verify(
    args: MultiDict[str, str],
    secrets: Iterable[str],
    required: tuple[str, ...] = ("shop", "hmac", "timestamp"),
    now: float | None = None,
) -> Signed | Refused:
    missing = [name for name in required if not args.get(name)]
    if missing:
        return Refused("missing_params", "missing " + ", ".join(missing))
    shop = args["shop"].strip().lower()
    if not valid_shop_domain(shop):
        return Refused("bad_shop_domain", f"{args['shop'][:100]!r} is not a *.myshopify.com domain")
    given = args["hmac"].strip().lower()
    if not given.isascii():
        return Refused("bad_hmac")
    matches = [hmac.compare_digest(signature(args, secret), given) for secret in secrets]
    if not any(matches):
        return Refused("bad_hmac")
    try:
        timestamp = int(args["timestamp"])
    except ValueError:
        return Refused("bad_timestamp", "the timestamp is not a number")
    age = (time.time() if now is None else now) - timestamp
    if age > MAX_AGE_SECONDS or age < -MAX_FUTURE_SECONDS:
        return Refused("bad_timestamp", f"the timestamp is {int(age)} seconds old")
    return Signed(shop=shop)
