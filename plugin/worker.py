"""The RQ worker entry point: periodic jobs scheduled, the hand-off dispatcher (and on
PostgreSQL the listener) started, then rq's worker with its scheduler."""

from __future__ import annotations

from rq import SimpleWorker, Worker

from plugin.queue import RedisQueue
from plugin.services import Services

# RQ's maintenance pass (default every 10 min) is also when a worker takes over the scheduler
# lock of a worker that died and requeues jobs abandoned by a killed worker. Until then
# delayed jobs, retries and the periodic sweeps wait: after a Redis outage or a SIGKILL that
# was up to 10 minutes of nothing. It runs every SWEEP_SECONDS (a minute by default): prompt
# recovery for little Redis work.
# An idle worker waits for a job up to (worker TTL - 15 s) before it looks at maintenance
# again (default 405 s): a TTL of SWEEP_SECONDS lets it notice the above as often (RQ needs
# the TTL above 15 s).
MIN_WORKER_TTL_SECONDS = 20


def run_worker(services: Services, burst: bool = False, fork: bool = False) -> bool:
    queue = services.queue
    assert isinstance(queue, RedisQueue)
    from plugin import dispatcher, listener, periodic

    periodic.ensure_scheduled(services)
    listening = None
    if burst:
        dispatcher.drain(queue)
        if listener.notified(services):  # nobody listened: the catch-up finds what is pending
            listener.enqueue_catch_up(queue)
    else:
        dispatcher.start(queue)
        if listener.notified(services):
            listening = listener.Listener(queue, services.db).start()
    worker_class = Worker if fork else SimpleWorker
    worker = worker_class(
        [queue.rq],
        connection=queue.redis,
        serializer=queue.rq.serializer,
        maintenance_interval=services.config.sweep_seconds,
        worker_ttl=max(MIN_WORKER_TTL_SECONDS, services.config.sweep_seconds),
    )
    stop_keeping_alive = queue.keep_alive(worker.name)
    try:
        return worker.work(burst=burst, with_scheduler=True)
    finally:
        stop_keeping_alive()
        if listening is not None:
            listening.stop()
