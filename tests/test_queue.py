import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from plugin.config import PROJECT_ROOT
from plugin.models import OutboxEmail
from plugin.queue import ALIVE_SECONDS, EmbeddedQueue, backoff_intervals
from plugin.worker import run_worker
from tests import jobs
from tests.conftest import make_config
from wsgi import create_app


def outbox_ids(services) -> set[str]:
    with services.db.session() as session:
        return set(session.scalars(select(OutboxEmail.message_id)))


def test_embedded_queue_answers_before_the_job_runs(app: Flask, services):
    jobs.release.clear()

    @app.get("/_enqueue")
    def enqueue():
        services.queue.enqueue("tests.jobs.wait_then_mark", "<embedded@test>")
        return "queued"

    response = app.test_client().get("/_enqueue")
    # The response is back while the job is still held: it runs after the request.
    assert response.data == b"queued"
    assert outbox_ids(services) == set()
    jobs.release.set()
    assert services.queue.wait_idle(5)
    assert outbox_ids(services) == {"<embedded@test>"}


def test_embedded_queue_retries_a_failing_job(services):
    queue = EmbeddedQueue(retry_base=0.01)
    attempts = []

    import tests.jobs as module

    def flaky(key):
        attempts.append(key)
        if len(attempts) < 3:
            raise RuntimeError("not yet")

    module.flaky = flaky  # a job function the queue finds by its dotted path
    try:
        queue.enqueue("tests.jobs.flaky", "k")
        deadline = time.monotonic() + 10
        while len(attempts) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        queue.close()
        del module.flaky
    assert attempts == ["k", "k", "k"]


def test_embedded_queue_refuses_arguments_that_are_not_json(services):
    with pytest.raises(TypeError):
        services.queue.enqueue("tests.jobs.mark", object())  # type: ignore[arg-type]


@pytest.mark.redis
def test_rq_runs_the_same_job(database_url, redis_url):
    app = create_app(make_config(database_url, redis_url=redis_url))
    services = app.extensions["amends"]
    try:
        services.queue.enqueue("tests.jobs.mark", "<rq@test>")
        run_worker(services, burst=True)
        assert outbox_ids(services) == {"<rq@test>"}
    finally:
        services.close()


@pytest.mark.redis
def test_rq_runs_a_job_put_in_front_before_those_already_waiting(database_url, redis_url):
    app = create_app(make_config(database_url, redis_url=redis_url))
    services = app.extensions["amends"]
    jobs.ran.clear()
    try:
        services.queue.enqueue("tests.jobs.note", "first")
        services.queue.enqueue("tests.jobs.note", "second")
        services.queue.enqueue("tests.jobs.note", "urgent", front=True)
        run_worker(services, burst=True)
        assert jobs.ran == ["urgent", "first", "second"]
    finally:
        services.close()


def test_embedded_queue_runs_a_job_put_in_front_first(services):
    queue = EmbeddedQueue()
    jobs.ran.clear()
    jobs.release.clear()
    try:
        queue.enqueue("tests.jobs.wait_then_mark", "<held@test>")  # holds the thread
        queue.enqueue("tests.jobs.note", "first")
        queue.enqueue("tests.jobs.note", "second")
        queue.enqueue("tests.jobs.note", "urgent", front=True)
        queue.enqueue("tests.jobs.note", "later", front=True, delay=timedelta(milliseconds=1))
        jobs.release.set()
        assert queue.wait_idle(10)
    finally:
        queue.close()
    assert jobs.ran == ["urgent", "first", "second", "later"]


@pytest.mark.redis
def test_rq_retries_a_failing_job_with_backoff(database_url, redis_url):
    from rq.registry import ScheduledJobRegistry

    app = create_app(make_config(database_url, redis_url=redis_url, extra={"retry_base_seconds": 1}))
    services = app.extensions["amends"]
    key = uuid.uuid4().hex
    try:
        services.queue.enqueue("tests.jobs.fail_once_then_mark", key, job_id=f"retry-{key}")
        run_worker(services, burst=True)
        # The failed attempt is scheduled for later, not run again at once.
        registry = ScheduledJobRegistry(queue=services.queue.rq)
        assert f"retry-{key}" in registry.get_job_ids()
        assert services.redis.lrange("done", 0, -1) == []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not services.redis.lrange("done", 0, -1):
            time.sleep(0.5)
            run_worker(services, burst=True)
        assert services.redis.lrange("done", 0, -1) == [key.encode()]
        assert int(services.redis.get(f"attempts:{key}")) == 2
    finally:
        services.close()


def test_backoff_grows_with_jitter():
    intervals = backoff_intervals(count=6, base=2, cap=600)
    assert all(a < b for a, b in itertools.pairwise(intervals))
    assert 1 <= intervals[0] <= 3 and 51 <= intervals[5] <= 77
    assert len({tuple(backoff_intervals(count=6)) for _ in range(20)}) > 1


# A real `amends worker`-like process: run_worker with the test configuration.
WORKER = (
    "import sys; from tests.conftest import make_config; from wsgi import create_app; "
    "from plugin.worker import run_worker; "
    "run_worker(create_app(make_config(sys.argv[1], redis_url=sys.argv[2])).extensions['amends'])"
)


@pytest.mark.redis
def test_a_job_whose_worker_was_killed_stops_waiting_long_before_rq_notices(database_url, redis_url):
    """The sweeps enqueue again only what is not waiting: a job its worker died in must stop
    counting as running within ALIVE_SECONDS, while RQ still has it as started for minutes."""
    from rq.job import Job

    app = create_app(make_config(database_url, redis_url=redis_url))
    services = app.extensions["amends"]
    queue = services.queue
    # Its own process group: RQ's scheduler is a child process, and a machine that dies takes
    # both (killing only the worker would leave the scheduler running after the test).
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, database_url, redis_url], cwd=PROJECT_ROOT, start_new_session=True
    )
    try:
        queue.enqueue("tests.jobs.sleep", 600, job_id="held")
        job = Job.fetch("held", connection=services.redis, serializer=queue.rq.serializer)
        deadline = time.monotonic() + 30
        while job.get_status() != "started" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert job.get_status() == "started"
        # Alive past its key's first expiry: the worker keeps refreshing it.
        time.sleep(ALIVE_SECONDS + 1)
        assert queue.waiting(["held"]) == {"held"}

        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        killed = time.monotonic()
        while queue.waiting(["held"]) and time.monotonic() < killed + ALIVE_SECONDS + 5:
            time.sleep(0.5)
        assert queue.waiting(["held"]) == set()
        assert time.monotonic() - killed <= ALIVE_SECONDS + 3
        assert job.get_status() == "started"  # RQ's own cleanup has not run yet
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        services.close()
