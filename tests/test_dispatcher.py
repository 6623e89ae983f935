"""The web's hand-off (one RPUSH) and the workers' dispatcher that turns it into RQ jobs,
on real Redis: batches, bad items, a Redis that refuses the enqueue, and the thread."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator

import pytest
from redis import Redis
from rq.job import Job

from plugin import dispatcher
from plugin.queue import RETRY_COUNT, RedisQueue
from plugin.worker import run_worker
from tests.conftest import make_config
from wsgi import create_app

pytestmark = pytest.mark.redis


@pytest.fixture
def queue(redis_url: str) -> Iterator[RedisQueue]:
    queue = RedisQueue(redis_url, name=f"t{uuid.uuid4().hex[:8]}")
    yield queue
    queue.close()


def job(queue: RedisQueue, job_id: str) -> Job:
    return Job.fetch(job_id, connection=queue.redis, serializer=queue.rq.serializer)


def test_a_hand_off_is_one_list_item_until_a_dispatcher_enqueues_it(queue):
    queue.hand_off_many([("tests.jobs.mark", ["<a@test>", 7], "delivery-7")])

    assert queue.redis.llen(queue.handoff_key) == 1
    assert queue.rq.count == 0
    assert dispatcher.drain(queue) == 1

    assert queue.redis.llen(queue.handoff_key) == 0
    assert queue.rq.job_ids == ["delivery-7"]
    enqueued = job(queue, "delivery-7")
    assert (enqueued.func_name, enqueued.args) == ("tests.jobs.mark", ["<a@test>", 7])
    # The same policy as a direct enqueue: retried with backoff, kept a week when it fails.
    assert enqueued.retries_left == RETRY_COUNT
    assert enqueued.failure_ttl == 7 * 24 * 3600


def test_a_long_list_is_moved_in_batches_and_nothing_is_lost(queue):
    count = dispatcher.BATCH * 2 + 17
    for n in range(count):
        queue.hand_off_many([("tests.jobs.mark", [n], f"d-{n}")])

    assert dispatcher.dispatch(queue, block=None) == dispatcher.BATCH
    assert dispatcher.drain(queue) == count - dispatcher.BATCH
    assert sorted(queue.rq.job_ids) == sorted(f"d-{n}" for n in range(count))


def test_a_malformed_item_is_dropped_and_logged_and_the_rest_enqueued(queue, caplog):
    queue.hand_off_many([("tests.jobs.mark", [1], "d-1")])
    queue.redis.rpush(
        queue.handoff_key,
        b"\xff not json",
        json.dumps({"func": "x"}),
        json.dumps(["tests.jobs.mark", 5, "d-5"]),  # arguments not a list: RQ would refuse the batch
        json.dumps(["tests.jobs.mark", [6], None]),
    )
    queue.hand_off_many([("tests.jobs.mark", [2], "d-2")])

    with caplog.at_level(logging.ERROR, logger="plugin.dispatcher"):
        assert dispatcher.drain(queue) == 2

    assert sorted(queue.rq.job_ids) == ["d-1", "d-2"]
    assert caplog.text.count("hand-off item dropped") == 4


def test_the_same_job_twice_in_one_batch_is_enqueued_once(queue):
    queue.hand_off_many([("tests.jobs.mark", [5], "delivery-5")])
    queue.hand_off_many([("tests.jobs.mark", [5], "delivery-5")])

    assert dispatcher.drain(queue) == 1
    assert queue.rq.job_ids == ["delivery-5"]


def test_items_go_back_on_the_list_when_redis_refuses_the_enqueue(queue, redis_url):
    # A Redis user that may pop and push lists but not write RQ's job hashes: the pipeline
    # fails after the items were popped, as it would if Redis went away in between.
    admin = Redis.from_url(redis_url)
    user = f"dispatch-{uuid.uuid4().hex[:8]}"
    admin.execute_command("ACL", "SETUSER", user, "on", "nopass", "~*", "&*", "+@all", "-hset")
    limited = RedisQueue(redis_url.replace("redis://", f"redis://{user}@"), name=queue.rq.name)
    try:
        for n in range(3):
            queue.hand_off_many([("tests.jobs.mark", [n], f"d-{n}")])
        with pytest.raises(Exception, match="permission"):
            dispatcher.dispatch(limited, block=None)
        # Nothing lost, order kept: the next dispatcher with the right to write takes them.
        waiting = queue.redis.lrange(queue.handoff_key, 0, -1)
        assert [json.loads(item)[2] for item in waiting] == ["d-0", "d-1", "d-2"]
        assert dispatcher.drain(queue) == 3
    finally:
        limited.close()
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def test_the_dispatcher_thread_enqueues_what_is_handed_off(queue):
    stop = dispatcher.start(queue)
    try:
        queue.hand_off_many([("tests.jobs.mark", [1], "d-thread")])
        deadline = time.monotonic() + 10
        while "d-thread" not in queue.rq.job_ids and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
    assert queue.rq.job_ids == ["d-thread"]
    assert queue.redis.llen(queue.handoff_key) == 0


def test_a_burst_worker_first_takes_what_was_handed_off(database_url, redis_url):
    app = create_app(make_config(database_url, redis_url=redis_url))
    services = app.extensions["amends"]
    try:
        services.queue.hand_off_many([("tests.jobs.fail_once_then_mark", ["k1"], "handed-k1")])
        run_worker(services, burst=True)
        # Its first attempt failed on purpose: the retry policy came with the hand-off.
        assert int(services.redis.get("attempts:k1")) == 1
        assert job(services.queue, "handed-k1").retries_left == RETRY_COUNT - 1
    finally:
        services.close()
