"""The per-shop Admin API budget: a leaky bucket shared by every worker through Redis (one
Lua script), fed by Shopify's `throttleStatus`, with an in-process fallback without Redis."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
import responses

from plugin import budget
from plugin.config import SHOPIFY_API_VERSION
from plugin.errors import ShopifyRetryableError
from plugin.shopify.client import ShopifyClient
from tests.conftest import make_config
from tests.factories import SHOP, make_shop
from wsgi import create_app

COST = 10


@pytest.fixture(autouse=True)
def _fresh_local_budget():
    budget._local.reset()
    yield
    budget._local.reset()


@pytest.fixture(params=["local", "redis"])
def holder(request):
    """Something with a `.redis` (all the budget reads of Services): None, or a real Redis."""
    if request.param == "local":
        yield SimpleNamespace(redis=None)
        return
    redis_url = request.getfixturevalue("redis_url")
    from redis import Redis

    client = Redis.from_url(redis_url)
    yield SimpleNamespace(redis=client)
    client.close()


def test_a_full_bucket_grants_at_once_then_callers_wait_their_turn(holder):
    budget.observe(holder, SHOP, 30, 30, 100)
    started = time.monotonic()
    waits = [budget.reserve(holder, SHOP, COST) for _ in range(5)]
    elapsed = time.monotonic() - started  # restores points meanwhile, on a busy machine too
    assert waits[:3] == [0, 0, 0]
    # The 4th and 5th are queued behind the first three: 0.1 s and 0.2 s of restore at 100/s.
    assert 0.1 - elapsed - 0.001 <= waits[3] <= 0.1 + 0.001
    assert 0.2 - elapsed - 0.001 <= waits[4] <= 0.2 + 0.001


def test_a_wait_over_the_limit_reserves_nothing_and_goes_back_to_the_queue(holder):
    budget.observe(holder, SHOP, 0, 1000, 1)
    with pytest.raises(ShopifyRetryableError) as raised:
        budget.reserve(holder, SHOP, COST, max_wait=5)
    assert raised.value.retry_after == pytest.approx(10, abs=0.2)
    bucket = budget.snapshot(holder, SHOP)
    assert bucket.available == pytest.approx(0, abs=0.2)  # nothing was taken


def test_observe_learns_the_bucket_and_never_believes_more_than_shopify_says(holder):
    budget.observe(holder, SHOP, 500, 2000, 100)
    bucket = budget.snapshot(holder, SHOP)
    assert (bucket.maximum, bucket.rate) == (2000, 100)
    assert bucket.available == pytest.approx(500, abs=5)
    budget.observe(holder, SHOP, 1900, 2000, 100)  # a stale, rosier report changes nothing
    assert budget.snapshot(holder, SHOP).available < 600


def test_points_reserved_and_not_spent_are_given_back(holder):
    budget.observe(holder, SHOP, 100, 100, 1)
    budget.reserve(holder, SHOP, 55)  # the requested cost: Shopify admits the call only with it
    # Shopify spent 9 and refunded the rest; its report comes with the refund.
    budget.observe(holder, SHOP, 91, 100, 1, unspent=55 - 9)
    assert budget.snapshot(holder, SHOP).available == pytest.approx(91, abs=0.5)
    # Another worker's reservation Shopify has not seen yet stays taken: the report caps.
    budget.reserve(holder, SHOP, 20)
    budget.observe(holder, SHOP, 91, 100, 1, unspent=0)
    assert budget.snapshot(holder, SHOP).available == pytest.approx(71, abs=0.5)


def test_throttled_drains_the_bucket(holder):
    budget.observe(holder, SHOP, 1000, 1000, 50)
    budget.drain(holder, SHOP, 3, 50)
    assert budget.reserve(holder, SHOP, COST) == pytest.approx((COST - 3) / 50, abs=0.02)


def test_a_pause_holds_every_caller_back(holder):
    budget.observe(holder, SHOP, 1000, 1000, 100)
    budget.pause(holder, SHOP, 2.0)
    with pytest.raises(ShopifyRetryableError) as raised:
        budget.reserve(holder, SHOP, COST, max_wait=1)
    assert raised.value.retry_after == pytest.approx(2.1, abs=0.05)
    assert budget.reserve(holder, SHOP, COST, max_wait=5) == pytest.approx(2.1, abs=0.05)


def test_shops_have_separate_buckets(holder):
    budget.observe(holder, SHOP, 0, 100, 10)
    assert budget.reserve(holder, "other-store.myshopify.com", COST) == 0


def test_acquire_sleeps_for_its_turn(holder):
    budget.observe(holder, SHOP, 10, 10, 100)
    budget.acquire(holder, SHOP, COST)
    started = time.monotonic()
    budget.acquire(holder, SHOP, COST)
    assert 0.07 < time.monotonic() - started < 0.5


def test_redis_down_falls_back_to_this_process():
    from redis import Redis

    down = SimpleNamespace(redis=Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2))
    budget.observe(down, SHOP, 10, 10, 100)
    assert budget.reserve(down, SHOP, COST) == 0
    assert budget.reserve(down, SHOP, COST) > 0


# ---------------------------------------------------------------------------------------------
# Many workers, one shop


def _spend(redis_url: str, seconds: float, ready: Any, go: Any, start_at: Any, results: Any) -> None:
    """A worker process: once every worker is up, take 10 points at a time for `seconds` from
    the common start; report when each was spent."""
    from redis import Redis

    holder = SimpleNamespace(redis=Redis.from_url(redis_url))
    holder.redis.ping()
    ready.put(True)
    go.wait(120)
    time.sleep(max(0.0, start_at.value - time.time()))
    spent = []
    deadline = start_at.value + seconds
    while time.time() < deadline:
        budget.acquire(holder, SHOP, COST)  # type: ignore[arg-type]
        spent.append(time.time())
    results.put(spent)


@pytest.mark.redis
def test_workers_in_separate_processes_stay_within_the_shops_rate_together(redis_url):
    from redis import Redis

    holder = SimpleNamespace(redis=Redis.from_url(redis_url))
    maximum, rate, seconds = 50, 100, 2.0
    budget.observe(holder, SHOP, maximum, maximum, rate)
    context = multiprocessing.get_context("spawn")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    start_at = context.Value("d", 0.0)
    workers = [
        context.Process(target=_spend, args=(redis_url, seconds, ready, go, start_at, results))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:  # spawning is slow on a busy machine: start together once all are up
        ready.get(timeout=120)
    start_at.value = time.time() + 0.2
    go.set()
    times = sorted(t for _ in workers for t in results.get(timeout=60))
    for worker in workers:
        worker.join(timeout=10)
    assert len(times) > 20
    # Over any stretch of time, the points spent fit in the bucket plus what it restored.
    worst = max(
        COST * (j - i + 1) - (maximum + rate * (times[j] - times[i]))
        for i in range(len(times))
        for j in range(i, len(times))
    )
    assert worst <= 2 * COST, f"the workers overspent by {worst} points"
    # And together they did use it: about a bucketful plus rate × time.
    assert COST * len(times) >= 0.8 * (maximum + rate * seconds)


class LeakyBucketAdmin:
    """Shopify's Admin API as far as cost goes: a leaky bucket, THROTTLED when it is empty."""

    def __init__(self, maximum: float, rate: float):
        self.maximum, self.rate = maximum, rate
        self.available, self.at = maximum, time.monotonic()
        self.lock = threading.Lock()
        self.ok = self.throttled = 0

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        with self.lock:
            now = time.monotonic()
            self.available = min(self.maximum, self.available + (now - self.at) * self.rate)
            self.at = now
            status = {"maximumAvailable": self.maximum, "restoreRate": self.rate}
            if self.available < COST:
                self.throttled += 1
                body = {
                    "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                    "extensions": {
                        "cost": {
                            "requestedQueryCost": COST,
                            "actualQueryCost": None,
                            "throttleStatus": {**status, "currentlyAvailable": self.available},
                        }
                    },
                }
                return 200, {}, json.dumps(body)
            self.available -= COST
            self.ok += 1
            body = {
                "data": {"shop": {"name": "Calm Coffee"}},
                "extensions": {
                    "cost": {
                        "requestedQueryCost": COST,
                        "actualQueryCost": COST,
                        "throttleStatus": {**status, "currentlyAvailable": self.available},
                    }
                },
            }
            return 200, {}, json.dumps(body)


@pytest.mark.redis
def test_a_burst_from_many_workers_is_never_throttled(
    database_url, redis_url, shopify: responses.RequestsMock
):
    app = create_app(make_config(database_url, redis_url=redis_url))
    services = app.extensions["amends"]
    try:
        make_shop(services)
        fake = LeakyBucketAdmin(maximum=40, rate=100)
        url = f"https://{SHOP}/admin/api/{SHOPIFY_API_VERSION}/graphql.json"
        shopify.add_callback(responses.POST, url, callback=fake, content_type="application/json")
        ShopifyClient(services, SHOP).graphql("{ shop { name } }")  # the first answer tells the bucket's size

        failures: list[BaseException] = []

        def worker() -> None:
            client = ShopifyClient(services, SHOP)
            try:
                for _ in range(8):
                    client.graphql("{ shop { name } }")
            except BaseException as error:  # reported below, with the fake's counts
                failures.append(error)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        elapsed = time.monotonic() - started
        assert failures == [], (failures, fake.ok, fake.throttled)
        assert fake.throttled == 0, (fake.ok, fake.throttled)
        assert fake.ok == 1 + 64
        # 64 calls × 10 points = 640 points; the bucket held ~30 and restores 100/s: ≥ 6 s.
        assert elapsed >= (64 * COST - 40) / 100 * 0.9
    finally:
        services.close()
