"""Background jobs: RQ on Redis in production, an in-process queue with the same shape
when no REDIS_URL is set.

Jobs are named by dotted path ("actions.deliveries.process_delivery") and take JSON-safe
arguments only (ids), so the web never imports the jobs and nothing is pickled.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, Protocol

from werkzeug.utils import import_string

log = logging.getLogger(__name__)

JsonArg = str | int | float | bool | None

# Exponential backoff for a failing job: 2 s, 4 s … capped at 10 min, 10 tries.
RETRY_BASE_SECONDS = 2.0
RETRY_MAX_SECONDS = 600.0
RETRY_COUNT = 10


def backoff_intervals(
    count: int = RETRY_COUNT, base: float = RETRY_BASE_SECONDS, cap: float = RETRY_MAX_SECONDS
) -> list[int]:
    """Exponential intervals with ±20 % jitter, so jobs that failed together do not retry
    together."""
    intervals = []
    for attempt in range(count):
        delay = min(cap, base * 2**attempt) * random.uniform(0.8, 1.2)  # noqa: S311 - jitter
        intervals.append(max(1, round(delay)))
    return intervals


class JobQueue(Protocol):
    """`delay` runs a job later; `front` puts it ahead of every job already waiting (a
    customer's apology before the backlog of a storm)."""

    kind: str

    def enqueue(
        self,
        func: str,
        *args: JsonArg,
        job_id: str | None = None,
        delay: timedelta | None = None,
        retry: bool = True,
        front: bool = False,
    ) -> None: ...

    def hand_off_many(self, jobs: Sequence[tuple[str, Sequence[JsonArg], str]]) -> None: ...

    def waiting(self, job_ids: Sequence[str]) -> set[str]: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...


_WAITING = {b"queued", b"scheduled", b"deferred", b"started"}

# Every `amends worker` keeps a key alive while its process lives (plugin/worker.py). A started
# job whose worker's key has expired was abandoned by a killed worker: RQ itself notices only
# once the job's timeout and a minute have passed (4 minutes for a SimpleWorker's job), and
# until then the sweeps took it for running and waited.
ALIVE_SECONDS = 10
ALIVE_REFRESH_SECONDS = 3


class RedisQueue:
    """RQ with the JSON serializer: arguments that are not JSON fail at enqueue time."""

    kind = "redis"

    def __init__(self, redis_url: str, name: str = "amends", retry_base: float = RETRY_BASE_SECONDS):
        from redis import Redis
        from rq import Queue
        from rq.serializers import JSONSerializer

        self.redis = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
        self.rq = Queue(name, connection=self.redis, serializer=JSONSerializer)
        self.retry_base = retry_base
        self.handoff_key = f"{name}:handoff"
        self.alive_prefix = f"{name}:alive:"

    def job_options(self, job_id: str | None, retry: bool) -> dict[str, Any]:
        from rq import Retry

        options: dict[str, Any] = {"job_id": job_id, "failure_ttl": 7 * 24 * 3600}
        if retry:
            options["retry"] = Retry(max=RETRY_COUNT, interval=backoff_intervals(base=self.retry_base))
        return options

    def enqueue(
        self,
        func: str,
        *args: JsonArg,
        job_id: str | None = None,
        delay: timedelta | None = None,
        retry: bool = True,
        front: bool = False,
    ) -> None:
        options = self.job_options(job_id, retry)
        if delay:
            self.rq.enqueue_in(delay, func, *args, **options)
        else:
            self.rq.enqueue(func, *args, at_front=front, **options)

    def hand_off_many(self, jobs: Sequence[tuple[str, Sequence[JsonArg], str]]) -> None:
        """Enqueue (function, arguments, job id) triples in one round trip: items on a Redis
        list that a worker's dispatcher turns into jobs (plugin/dispatcher.py). For the web's
        hot path, where RQ's own enqueue costs as much as the rest of the request."""
        self.redis.rpush(
            self.handoff_key, *(json.dumps([func, list(args), job_id]) for func, args, job_id in jobs)
        )

    def waiting(self, job_ids: Sequence[str]) -> set[str]:
        """Those of `job_ids` still to run: queued, scheduled (a retry), deferred or running
        in a live worker. Enqueueing one of these again would put it on the queue twice."""
        from rq.job import Job

        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(Job.key_for(job_id), "status", "worker_name")
            found = list(zip(job_ids, pipe.execute(), strict=True))
        waiting = {job_id for job_id, (status, _) in found if status in _WAITING}
        # worker_name stays from an earlier attempt: only a started job's is its runner.
        running = [
            (job_id, worker.decode()) for job_id, (status, worker) in found if status == b"started" and worker
        ]
        if running:
            with self.redis.pipeline(transaction=False) as pipe:
                for _, worker in running:
                    pipe.exists(self.alive_prefix + worker)
                alive = pipe.execute()
            for (job_id, worker), lives in zip(running, alive, strict=True):
                if not lives:
                    log.warning("job %s: its worker %s is gone; taken as lost", job_id, worker)
                    waiting.discard(job_id)
        return waiting

    def keep_alive(self, worker_name: str) -> Callable[[], None]:
        """Refresh `worker_name`'s key every few seconds; returns what stops it."""
        key = self.alive_prefix + worker_name
        stopped = threading.Event()

        def refresh() -> None:
            while not stopped.wait(ALIVE_REFRESH_SECONDS):
                try:
                    self.redis.set(key, 1, ex=ALIVE_SECONDS)
                except Exception as error:  # Redis away: the next refresh tries again
                    log.warning("worker %s: could not refresh its liveness key (%s)", worker_name, error)

        def stop() -> None:
            stopped.set()
            self.redis.delete(key)

        self.redis.set(key, 1, ex=ALIVE_SECONDS)  # before the first job can start
        threading.Thread(target=refresh, name="amends-alive", daemon=True).start()
        return stop

    def ping(self) -> None:
        self.redis.ping()

    def close(self) -> None:
        self.redis.close()


class EmbeddedQueue:
    """One background thread running the same job functions after the request is answered.

    For a laptop with nothing installed: it keeps production's shape (enqueue returns at
    once; delays and retries work) but not its durability. Work in the database that a lost
    job leaves undone is picked up by the periodic sweep, as in production.
    """

    kind = "embedded"

    def __init__(self, retry_base: float = RETRY_BASE_SECONDS):
        self.retry_base = retry_base
        self._heap: list[tuple[float, int, str, Sequence[JsonArg], int]] = []
        self._counter = itertools.count()
        self._wakeup = threading.Condition()
        self._running = 0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="amends-jobs", daemon=True)
        self._thread.start()

    def enqueue(
        self,
        func: str,
        *args: JsonArg,
        job_id: str | None = None,
        delay: timedelta | None = None,
        retry: bool = True,
        front: bool = False,
    ) -> None:
        json.dumps(args)  # the same contract as RQ's JSON serializer
        run_at = 0.0 if front and not delay else time.monotonic() + (delay.total_seconds() if delay else 0)
        tries_left = RETRY_COUNT if retry else 0
        with self._wakeup:
            heapq.heappush(self._heap, (run_at, next(self._counter), func, args, tries_left))
            self._wakeup.notify()

    def hand_off_many(self, jobs: Sequence[tuple[str, Sequence[JsonArg], str]]) -> None:
        for func, args, job_id in jobs:
            self.enqueue(func, *args, job_id=job_id)

    def waiting(self, job_ids: Sequence[str]) -> set[str]:
        return set()  # jobs here are not named; the sweep's re-run is harmless, as everywhere

    def close(self) -> None:
        with self._wakeup:
            self._closed = True
            self._heap.clear()
            self._wakeup.notify()

    def ping(self) -> None:
        if not self._thread.is_alive():
            raise RuntimeError("the embedded job thread has stopped")

    def idle(self) -> bool:
        """True when nothing is queued or running (for tests and the dev CLI)."""
        with self._wakeup:
            return not self._heap and not self._running

    def wait_idle(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._wakeup:
                due = [item for item in self._heap if item[0] <= time.monotonic() + 0.05]
                if not due and not self._running:
                    return True
            time.sleep(0.01)
        return False

    def _loop(self) -> None:
        while True:
            with self._wakeup:
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._wakeup.wait(timeout)
                if self._closed:
                    return
                _, _, func, args, tries_left = heapq.heappop(self._heap)
                self._running += 1
            try:
                import_string(func)(*args)
            except Exception:
                log.exception("job %s%r failed", func, tuple(args))
                if tries_left > 0:
                    attempt = RETRY_COUNT - tries_left
                    wait = backoff_intervals(attempt + 1, base=self.retry_base)[-1]
                    with self._wakeup:
                        heapq.heappush(
                            self._heap,
                            (time.monotonic() + wait, next(self._counter), func, args, tries_left - 1),
                        )
            finally:
                with self._wakeup:
                    self._running -= 1
