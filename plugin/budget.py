"""Each shop's Admin API budget, shared by every worker on every machine.

Shopify meters the GraphQL Admin API per app and shop with a leaky bucket: `maximumAvailable`
points that refill at `restoreRate` points a second. Amends keeps a model of that bucket per
shop in Redis, updated atomically by Lua scripts on Redis' own clock:

- `acquire(points)` refills the model for the time elapsed, then reserves the points. When the
  bucket holds too few, the reservation still goes through (the level goes below zero) and the
  caller sleeps until its points have been restored: callers queue up in arrival order, and
  all workers together never spend faster than the restore rate. A wait longer than
  `MAX_WAIT_SECONDS` reserves nothing and raises `ShopifyRetryableError(retry_after=…)`, so
  the job is retried later without holding a worker.
- `observe(...)` takes what Shopify reports in `extensions.cost.throttleStatus`: the bucket's
  real size and restore rate, and the level when lower than the model's (the model never
  believes it has more than Shopify says). It also gives back what a call reserved and did
  not spend (Shopify refunds a query's requested cost down to its actual cost): without
  that, every query that asks for more than it spends slows all the shop's calls down.
- `drain(...)` is the same after a THROTTLED answer; `pause(...)` after a 429 with
  `Retry-After` puts the bucket that far into debt, so no worker calls before then.

Without Redis (one process: the laptop set-up) the same model lives in this process. If
Redis fails mid-call the process falls back to its own model for that call: Shopify's
THROTTLED answers remain the backstop.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from plugin.errors import ShopifyRetryableError
from plugin.services import Services

log = logging.getLogger(__name__)

# Until Shopify has told us the shop's plan: the smallest published bucket.
DEFAULT_MAXIMUM = 1000.0
DEFAULT_RESTORE_RATE = 50.0
MAX_WAIT_SECONDS = 20.0
KEY_PREFIX = "amends:budget:"

# KEYS[1] bucket; ARGV: points, max_wait, default maximum, default rate.
# Returns {granted (1/0), wait seconds as a string}.
ACQUIRE = """
local key = KEYS[1]
local points = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local s = redis.call('HMGET', key, 'available', 'at', 'maximum', 'rate')
local maximum = tonumber(s[3]) or tonumber(ARGV[3])
local rate = tonumber(s[4]) or tonumber(ARGV[4])
local available = tonumber(s[1]) or maximum
local at = tonumber(s[2]) or now
available = math.min(maximum, available + math.max(0, now - at) * rate)
local wait = 0
if available < points then wait = (points - available) / rate end
local granted = 1
if wait > max_wait then
  granted = 0
else
  available = available - points
end
redis.call('HSET', key, 'available', tostring(available), 'at', tostring(now))
redis.call('EXPIRE', key, math.max(60, math.ceil(2 * maximum / rate) + math.ceil(wait)))
return {granted, tostring(wait)}
"""

# KEYS[1] bucket; ARGV: reported available ('' if unknown), maximum ('' if unknown),
# restore rate ('' if unknown), default maximum, default rate, pause seconds ('' if none),
# points reserved but not spent ('' if none).
OBSERVE = """
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local s = redis.call('HMGET', key, 'available', 'at', 'maximum', 'rate')
local maximum = tonumber(ARGV[2]) or tonumber(s[3]) or tonumber(ARGV[4])
local rate = tonumber(ARGV[3]) or tonumber(s[4]) or tonumber(ARGV[5])
local old_rate = tonumber(s[4]) or rate
local available = tonumber(s[1]) or maximum
local at = tonumber(s[2]) or now
available = math.min(maximum, available + math.max(0, now - at) * old_rate)
local refund = tonumber(ARGV[7])
if refund ~= nil and refund > 0 then available = math.min(maximum, available + refund) end
local reported = tonumber(ARGV[1])
if reported ~= nil and reported < available then available = reported end
local pause = tonumber(ARGV[6])
if pause ~= nil and -pause * rate < available then available = -pause * rate end
redis.call('HSET', key, 'available', tostring(available), 'at', tostring(now),
           'maximum', tostring(maximum), 'rate', tostring(rate))
redis.call('EXPIRE', key, math.max(60, math.ceil(2 * maximum / rate)))
return tostring(available)
"""


@dataclass
class Bucket:
    available: float
    maximum: float
    rate: float
    at: float


def acquire(services: Services, shop: str, points: float) -> None:
    """Take `points` from the shop's budget, waiting for them if need be."""
    wait = reserve(services, shop, points)
    if wait > 0:
        log.debug("shop %s: waiting %.2fs for %s Admin API points", shop, wait, points)
        time.sleep(wait)


def reserve(services: Services, shop: str, points: float, max_wait: float = MAX_WAIT_SECONDS) -> float:
    """Reserve `points` and return how long to wait before spending them; raise
    `ShopifyRetryableError` (reserving nothing) when that would be over `max_wait`."""
    redis = services.redis
    granted, wait = None, 0.0
    if redis is not None:
        try:
            raw_granted, raw_wait = _run(
                redis,
                "acquire",
                [KEY_PREFIX + shop],
                [points, max_wait, DEFAULT_MAXIMUM, DEFAULT_RESTORE_RATE],
            )
            granted, wait = bool(int(raw_granted)), float(raw_wait)
        except Exception as error:
            log.warning("shop %s: shared budget unavailable (%s); using this process's", shop, error)
    if granted is None:
        granted, wait = _local.reserve(shop, points, max_wait)
    if not granted:
        raise ShopifyRetryableError(
            f"{shop}: Admin API budget needs {wait:.1f}s to refill; retrying later", retry_after=wait
        )
    return wait


def observe(
    services: Services,
    shop: str,
    available: float,
    maximum: float | None,
    restore_rate: float | None,
    unspent: float = 0.0,
) -> None:
    """What Shopify reported after a call (`extensions.cost.throttleStatus`); `unspent` is what
    the call reserved beyond its actual cost, given back before the report caps the level."""
    _update(services, shop, available, maximum, restore_rate, unspent=unspent)


def drain(services: Services, shop: str, available: float | None, restore_rate: float | None) -> None:
    """Shopify answered THROTTLED: the bucket holds `available` (or nothing, if unknown)."""
    _update(services, shop, available if available is not None else 0.0, None, restore_rate)


def pause(services: Services, shop: str, seconds: float) -> None:
    """Shopify asked for a pause (429 with Retry-After): every worker's next call for
    the shop waits that long, and a job whose wait is too long goes back to the queue without
    calling Shopify at all (so an early retry costs nothing)."""
    if seconds > 0:
        _update(services, shop, None, None, None, pause_seconds=seconds)


def level(services: Services, shop: str) -> float | None:
    """How full the shop's bucket is, refilled to now: 0.0 (empty or in debt) to 1.0. None
    when nothing is known yet (or Redis cannot say): callers treat that as "not short"."""
    redis = services.redis
    if redis is not None:
        try:
            with redis.pipeline(transaction=False) as pipe:  # one round trip
                pipe.hmget(KEY_PREFIX + shop, "available", "at", "maximum", "rate")
                pipe.time()
                values, (seconds, micros) = pipe.execute()
        except Exception:
            return None
        bucket = _bucket(values)
        now = seconds + micros / 1_000_000  # the model's clock is Redis' (the Lua scripts)
    else:
        bucket, now = _local.get(shop), time.monotonic()
    if bucket is None:
        return None
    points = min(bucket.maximum, bucket.available + max(0.0, now - bucket.at) * bucket.rate)
    return max(0.0, points / bucket.maximum)


def snapshot(services: Services, shop: str) -> Bucket | None:
    """The model as it stands (for tests, benchmarks and the health of a storm)."""
    redis = services.redis
    if redis is not None:
        return _bucket(redis.hmget(KEY_PREFIX + shop, "available", "at", "maximum", "rate"))
    return _local.get(shop)


def _bucket(values: list[Any]) -> Bucket | None:
    if values[0] is None:
        return None
    return Bucket(
        available=float(values[0]),
        at=float(values[1]),
        maximum=float(values[2] or DEFAULT_MAXIMUM),
        rate=float(values[3] or DEFAULT_RESTORE_RATE),
    )


def _update(
    services: Services,
    shop: str,
    available: float | None,
    maximum: float | None,
    rate: float | None,
    pause_seconds: float | None = None,
    unspent: float = 0.0,
) -> None:
    if rate is not None and rate <= 0:
        rate = None
    if maximum is not None and maximum <= 0:
        maximum = None
    redis = services.redis
    if redis is not None:
        try:
            _run(
                redis,
                "observe",
                [KEY_PREFIX + shop],
                [
                    "" if available is None else available,
                    "" if maximum is None else maximum,
                    "" if rate is None else rate,
                    DEFAULT_MAXIMUM,
                    DEFAULT_RESTORE_RATE,
                    "" if pause_seconds is None else pause_seconds,
                    unspent if unspent > 0 else "",
                ],
            )
            return
        except Exception as error:
            log.warning("shop %s: shared budget unavailable (%s); using this process's", shop, error)
    _local.update(shop, available, maximum, rate, pause_seconds, unspent)


_scripts: dict[str, Any] = {}


def _run(redis: Any, name: str, keys: list[str], args: list[Any]) -> Any:
    """Run a script by its SHA (redis-py loads it again when Redis has forgotten it)."""
    if name not in _scripts:
        _scripts[name] = redis.register_script(ACQUIRE if name == "acquire" else OBSERVE)
    return _scripts[name](keys=keys, args=args, client=redis)


class LocalBudget:
    """The same model for one process, on its monotonic clock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, Bucket] = {}

    def _refilled(self, shop: str, now: float) -> Bucket:
        bucket = self._buckets.get(shop)
        if bucket is None:
            bucket = Bucket(DEFAULT_MAXIMUM, DEFAULT_MAXIMUM, DEFAULT_RESTORE_RATE, now)
            self._buckets[shop] = bucket
        bucket.available = min(bucket.maximum, bucket.available + max(0.0, now - bucket.at) * bucket.rate)
        bucket.at = now
        return bucket

    def reserve(self, shop: str, points: float, max_wait: float) -> tuple[bool, float]:
        with self._lock:
            bucket = self._refilled(shop, time.monotonic())
            wait = max(0.0, (points - bucket.available) / bucket.rate)
            if wait > max_wait:
                return False, wait
            bucket.available -= points
            return True, wait

    def update(
        self,
        shop: str,
        available: float | None,
        maximum: float | None,
        rate: float | None,
        pause_seconds: float | None = None,
        unspent: float = 0.0,
    ) -> None:
        with self._lock:
            bucket = self._refilled(shop, time.monotonic())
            if unspent > 0:
                bucket.available = min(bucket.maximum, bucket.available + unspent)
            if maximum is not None:
                bucket.maximum = maximum
                bucket.available = min(bucket.available, maximum)
            if rate is not None:
                bucket.rate = rate
            if available is not None and available < bucket.available:
                bucket.available = available
            if pause_seconds is not None:
                bucket.available = min(bucket.available, -pause_seconds * bucket.rate)

    def get(self, shop: str) -> Bucket | None:
        with self._lock:
            if shop not in self._buckets:
                return None
            bucket = self._refilled(shop, time.monotonic())
            return Bucket(bucket.available, bucket.maximum, bucket.rate, bucket.at)

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()


_local = LocalBudget()
