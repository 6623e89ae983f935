"""One worker at a time obtains a shop's new token pair; the others wait and use its result.

With Redis (REDIS_URL), a Redis lock per shop. Without it, a claim on the shop's row:
`token_claimed_until` is set by a compare-and-swap UPDATE that only succeeds when nobody
holds an unexpired claim, so it works the same on SQLite and PostgreSQL and never holds a
database transaction open during the HTTP call. Both kinds expire on their own, so a crashed
worker cannot block a shop forever.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Result, or_, update

from plugin.db import utcnow
from plugin.errors import TokenGrantRetryableError
from plugin.models import Shop
from plugin.services import Services

# Longer than a grant can take (connect + read timeouts), so a live holder keeps the lock.
HOLD_SECONDS = 30.0
WAIT_SECONDS = 35.0
POLL_SECONDS = 0.05


@contextmanager
def token_lock(services: Services, domain: str) -> Iterator[None]:
    """Hold the shop's token lock; TokenGrantRetryableError when it cannot be had in time."""
    if services.redis is not None:
        with _redis_lock(services.redis, domain):
            yield
    else:
        with _row_claim(services, domain):
            yield


@contextmanager
def _redis_lock(redis: Any, domain: str) -> Iterator[None]:
    lock = redis.lock(f"amends:token-lock:{domain}", timeout=HOLD_SECONDS, blocking_timeout=WAIT_SECONDS)
    if not lock.acquire():
        raise TokenGrantRetryableError(f"{domain}: another worker is still obtaining a token")
    try:
        yield
    finally:
        from redis.exceptions import LockError

        # It may have expired while held: whoever holds it now keeps it.
        with contextlib.suppress(LockError):
            lock.release()


@contextmanager
def _row_claim(services: Services, domain: str) -> Iterator[None]:
    """The shop's row must exist. The claim's exact time is what makes it ours: the release
    clears only that value, never a later worker's claim taken after ours expired."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        now = utcnow()
        claim = now + timedelta(seconds=HOLD_SECONDS)
        with services.db.session() as session:
            taken = rowcount(
                session.execute(
                    update(Shop)
                    .where(Shop.domain == domain)
                    .where(or_(Shop.token_claimed_until.is_(None), Shop.token_claimed_until < now))
                    .values(token_claimed_until=claim, updated_at=Shop.updated_at)
                    .execution_options(synchronize_session=False)
                )
            )
        if taken == 1:
            break
        if time.monotonic() > deadline:
            raise TokenGrantRetryableError(f"{domain}: another worker is still obtaining a token")
        time.sleep(POLL_SECONDS)
    try:
        yield
    finally:
        with services.db.session() as session:
            session.execute(
                update(Shop)
                .where(Shop.domain == domain, Shop.token_claimed_until == claim)
                .values(token_claimed_until=None, updated_at=Shop.updated_at)
                .execution_options(synchronize_session=False)
            )


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched."""
    return cast(CursorResult[Any], result).rowcount
