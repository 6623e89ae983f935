"""The database's hand-off on real PostgreSQL and Redis: the recorder's commit notifies, one
worker's listener leads and turns notifications into RQ jobs, a new leader catches up on what
was committed while nobody listened, and bad notifications are dropped."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rq.job import Job

from actions.deliveries import PROCESS_DELIVERY
from plugin import listener
from plugin.listener import Listener
from plugin.queue import RETRY_COUNT
from plugin.services import Services
from plugin.worker import run_worker
from tests import services as real
from tests.conftest import make_config
from tests.test_webhooks_recorder import row
from webhooks.recorder import Recorder
from wsgi import create_app

pytestmark = pytest.mark.redis
postgres_only = pytest.mark.skipif(real.target_engine() != "postgres", reason="PostgreSQL notifies")


@pytest.fixture
def quiet(database_url: str, redis_url: str) -> Iterator[tuple[Services, Recorder]]:
    """Services whose queue is Redis, with no worker running."""
    app = create_app(make_config(database_url, redis_url=redis_url))
    services = app.extensions["amends"]
    real.empty_tables(services.db.engine)
    yield services, app.extensions["amends.recorder"]
    services.close()


@pytest.fixture
def listeners(quiet: tuple[Services, Recorder]) -> Iterator[Callable[[], Listener]]:
    services, _ = quiet
    started: list[Listener] = []

    def start() -> Listener:
        started.append(Listener(services.queue, services.db).start())
        return started[-1]

    yield start
    for one in started:
        one.stop()


def until(check: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return found


def fetch(services: Services, job_id: str) -> Job:
    return Job.fetch(job_id, connection=services.redis, serializer=services.queue.rq.serializer)


def job_ids(services: Services) -> list[str]:
    return sorted(services.queue.rq.job_ids)


@postgres_only
def test_a_recorded_delivery_becomes_its_job_through_the_leading_listener(quiet, listeners):
    services, recorder = quiet
    leader = listeners()
    until(leader.leading.is_set)
    catch_up = fetch(services, listener.CATCH_UP_JOB)
    assert catch_up.func_name == "actions.sweep.catch_up"  # enqueued once it leads
    services.queue.rq.empty()

    delivery_id, handed_off = recorder.record(row(f"n-{uuid.uuid4()}"))
    assert delivery_id is not None and handed_off is True
    # No Redis call from the web: the job comes from the listener.
    until(lambda: job_ids(services) == [f"delivery-{delivery_id}"])
    job = fetch(services, f"delivery-{delivery_id}")
    assert (job.func_name, job.args) == (PROCESS_DELIVERY, [delivery_id])
    # The same policy as a direct enqueue: retried with backoff, kept a week when it fails.
    assert job.retries_left == RETRY_COUNT and job.failure_ttl == 7 * 24 * 3600


@postgres_only
def test_ignored_and_duplicate_deliveries_notify_nothing(quiet):
    services, recorder = quiet
    handoffs = real.HandOffs(services)
    try:
        webhook_id = f"d-{uuid.uuid4()}"
        first, _ = recorder.record(row(webhook_id))
        assert recorder.record(row(webhook_id)) == (None, False)  # the duplicate
        ignored, handed_off = recorder.record(row(f"i-{uuid.uuid4()}", state="ignored"))
        assert ignored is not None and handed_off is False
        assert handoffs.items() == [(PROCESS_DELIVERY, [first], f"delivery-{first}")]
    finally:
        handoffs.close()


@postgres_only
def test_one_listener_leads_and_another_takes_over_catching_up(quiet, listeners):
    services, recorder = quiet
    first = listeners()
    until(first.leading.is_set)
    second = listeners()
    time.sleep(listener.LEAD_RETRY_SECONDS + 0.5)
    assert not second.leading.is_set()  # the advisory lock is held by the first
    services.queue.rq.empty()

    one, _ = recorder.record(row(f"a-{uuid.uuid4()}"))
    until(lambda: job_ids(services) == [f"delivery-{one}"])  # enqueued once, not by both
    time.sleep(0.3)
    assert job_ids(services) == [f"delivery-{one}"]

    first.stop()  # its connection ends, and PostgreSQL frees the lock
    services.queue.rq.empty()
    missed, _ = recorder.record(row(f"b-{uuid.uuid4()}"))  # possibly while nobody listened
    until(second.leading.is_set, timeout=listener.LEAD_RETRY_SECONDS * 3)
    run_worker(services, burst=True)  # the catch-up job, then the deliveries' jobs
    with services.db.session() as session:
        from plugin.models import Delivery

        states = {d.id: d.state for d in session.query(Delivery)}
    # Both were processed (an unknown shop's delivery ends "ignored"), the missed one too.
    assert set(states) == {one, missed} and "pending" not in states.values()


@postgres_only
def test_a_burst_worker_catches_up_on_what_nobody_listened_to(quiet):
    services, recorder = quiet
    delivery_id, _ = recorder.record(row(f"c-{uuid.uuid4()}"))
    assert services.queue.rq.count == 0
    run_worker(services, burst=True)
    with services.db.session() as session:
        from plugin.models import Delivery

        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None and delivery.state != "pending"


@pytest.mark.parametrize(
    "payload",
    ["", "not json", "1", "[]", '{"a": 1}', '["f", "p"]', '[1, "p", [1]]', '["f", 2, [1]]', '["f", "p", 3]'],
)
def test_a_notification_not_of_the_recorder_gives_no_job(payload):
    assert listener.parse(payload) == []


def test_a_notification_names_one_job_per_integer_id():
    assert listener.parse('["m.f", "delivery", [3, "x", 4]]') == [
        ("m.f", [3], "delivery-3"),
        ("m.f", [4], "delivery-4"),
    ]


@postgres_only
def test_jobs_notified_while_redis_is_away_are_enqueued_once_it_is_back(quiet, redis_url, caplog):
    from redis import Redis

    from plugin.queue import RedisQueue
    from tests.reliability.proxy import TcpProxy

    services, recorder = quiet
    target = Redis.from_url(redis_url).connection_pool.connection_kwargs
    proxy = TcpProxy("redis", target["host"], target["port"])
    queue = RedisQueue(f"redis://127.0.0.1:{proxy.port}/{target['db']}", name=services.queue.rq.name)
    leader = Listener(queue, services.db).start()
    try:
        until(leader.leading.is_set)
        until(lambda: job_ids(services) == [listener.CATCH_UP_JOB])
        services.queue.rq.empty()
        proxy.cut()
        with caplog.at_level("WARNING", logger="plugin.listener"):
            ids = [recorder.record(row(f"r-{uuid.uuid4()}"))[0] for _ in range(3)]
            until(lambda: "wait for Redis" in caplog.text)
        assert job_ids(services) == []
        assert leader.leading.is_set()  # it keeps the lead, and what it was told
        proxy.restore()
        until(lambda: job_ids(services) == sorted(f"delivery-{i}" for i in ids))
    finally:
        leader.stop()
        queue.close()
        proxy.close()
