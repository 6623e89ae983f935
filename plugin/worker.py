"""The RQ worker entry point: periodic jobs scheduled, then rq's worker with its scheduler."""

from __future__ import annotations

from rq import SimpleWorker, Worker

from plugin.queue import RedisQueue
from plugin.services import Services


def run_worker(services: Services, burst: bool = False, fork: bool = False) -> bool:
    queue = services.queue
    assert isinstance(queue, RedisQueue)
    from plugin import periodic

    periodic.ensure_scheduled(services)
    worker_class = Worker if fork else SimpleWorker
    worker = worker_class([queue.rq], connection=queue.redis, serializer=queue.rq.serializer)
    return worker.work(burst=burst, with_scheduler=True)
