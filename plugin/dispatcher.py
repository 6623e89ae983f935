"""The workers' side of the web's hand-off: items on a Redis list become RQ jobs, in batches.

An RQ enqueue with its retry policy costs the webhook receiver about as much CPU as the rest
of the request, and two MULTI/EXEC round trips. Where the database cannot notify (SQLite;
PostgreSQL's way is plugin/listener.py), the receiver instead appends one small JSON item
per delivery (`RedisQueue.hand_off_many`, one RPUSH); a thread in every `amends worker` pops
up to `BATCH` items at a time and enqueues their jobs through one pipeline.

Nothing durable lives only on the list: the receiver answers 200 after the delivery row is
committed, so an item lost with a dispatcher killed between its pop and its enqueue leaves
a pending delivery that the sweep enqueues again (actions/sweep.py).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, cast

from plugin.queue import RedisQueue

log = logging.getLogger(__name__)

BATCH = 500
BLOCK_SECONDS = 1
PAUSE_AFTER_ERROR_SECONDS = 1.0


def dispatch(queue: RedisQueue, block: float | None = BLOCK_SECONDS) -> int:
    """Move what waits on the hand-off list into RQ; waits up to `block` seconds for a first
    item (None: does not wait). Returns how many jobs were enqueued."""
    redis = queue.redis
    items: list[Any] = []
    if block:
        first = redis.blpop([queue.handoff_key], timeout=block)
        if first is None:
            return 0
        items.append(first[1])
    items.extend(cast(list[Any], redis.lpop(queue.handoff_key, BATCH - len(items)) or []))
    if not items:
        return 0

    triples = []
    for raw in items:
        job = _parse(raw)
        if job is None:
            # Dropped, not put back: an item RQ refuses would fail every batch it is in. Its
            # delivery is still pending in the database, and the sweep enqueues it.
            log.error("hand-off item dropped: not [function, arguments, job id] (%d bytes)", len(raw))
            continue
        triples.append(job)
    try:
        return enqueue_jobs(queue, triples)
    except Exception:
        _put_back(queue, items)
        raise


def enqueue_jobs(queue: RedisQueue, triples: list[tuple[str, list[Any], str]]) -> int:
    """(function, arguments, job id) triples as RQ jobs with the usual retry policy, in one
    pipeline. Returns how many were enqueued."""
    jobs = []
    seen: set[str] = set()
    for func, args, job_id in triples:
        if job_id in seen:  # one pipeline cannot hold the same job id twice
            continue
        seen.add(job_id)
        jobs.append(queue.rq.prepare_data(func, args, **queue.job_options(job_id, retry=True)))
    if not jobs:
        return 0
    with queue.redis.pipeline() as pipe:
        queue.rq.enqueue_many(jobs, pipeline=pipe)
        pipe.execute()
    return len(jobs)


def _parse(raw: Any) -> tuple[str, list[Any], str] | None:
    try:
        item = json.loads(raw)
    except ValueError:
        return None
    if not (isinstance(item, list) and len(item) == 3):
        return None
    func, args, job_id = item
    if isinstance(func, str) and isinstance(args, list) and isinstance(job_id, str) and job_id:
        return func, args, job_id
    return None


def _put_back(queue: RedisQueue, items: list[Any]) -> None:
    """Best effort: the items go back to the front of the list; if Redis refuses that too,
    their deliveries are still pending in the database and the sweep finds them."""
    try:
        queue.redis.lpush(queue.handoff_key, *reversed(items))
    except Exception as error:
        log.warning("%d hand-off items left to the sweep: %s", len(items), type(error).__name__)


def drain(queue: RedisQueue) -> int:
    """Everything waiting now (a burst worker runs this before its jobs)."""
    total = 0
    while moved := dispatch(queue, block=None):
        total += moved
    return total


def start(queue: RedisQueue) -> threading.Event:
    """The dispatcher thread of a worker process (a daemon: it stops with the worker, or
    when the returned event is set)."""
    stop = threading.Event()
    threading.Thread(target=_loop, args=(queue, stop), name="amends-dispatcher", daemon=True).start()
    return stop


def _loop(queue: RedisQueue, stop: threading.Event) -> None:
    failing: str | None = None
    while not stop.is_set():
        try:
            dispatch(queue)
            if failing:
                log.info("hand-off dispatcher running again")
                failing = None
        except Exception as error:  # Redis down: retry quietly until it is back
            if failing != type(error).__name__:
                failing = type(error).__name__
                log.warning("hand-off dispatcher paused: %s", failing)
            stop.wait(PAUSE_AFTER_ERROR_SECONDS)
