"""`python -m bench.jobs_cpu [N] [--profile]`: the workers' CPU per incident, in one process.

B2's CPU figure covers every process on a shared machine; this one isolates the jobs. The
stack is B2's (PostgreSQL, Redis, the stand-in, an SMTP server, gunicorn), without the
stand-in's latency. N late-delivery webhooks (default 300, over 10 shops) are posted and
recorded; then one RQ `SimpleWorker`, as `amends worker` runs it, works through every job
they create (delivery, apology, follow-up) in this process, in burst mode. Reported: that
thread's CPU per incident (RQ included; the SMTP server's thread in this process is left
out), and with `--profile` the functions taking most of it (cProfile on the thread's CPU
clock, cumulative), saved next to the run's logs. SQL statements and commits per incident are
counted too: they move with the code, not with the machine's load.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from pathlib import Path

from bench.pipeline import Sender
from bench.stack import Stack

SHOPS = [f"jobs-cpu-{i}.myshopify.com" for i in range(10)]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    profile = "--profile" in args
    numbers = [a for a in args if a.isdigit()]
    count = int(numbers[0]) if numbers else 300
    run_dir = Path(__file__).resolve().parent / "results" / f"jobs-cpu-{time.strftime('%Y%m%d-%H%M%S')}"
    with Stack(run_dir) as stack:
        from rq import SimpleWorker

        from plugin import dispatcher, listener
        from plugin import services as services_module
        from plugin.queue import RedisQueue

        for shop in SHOPS:
            stack.install_shop(shop)
        stack.start_web()
        services = services_module.init(stack.config())
        queue = services.queue
        assert isinstance(queue, RedisQueue)

        import sqlalchemy as sa

        counts = {"statements": 0, "commits": 0}

        def _statement(*_args: object) -> None:
            counts["statements"] += 1

        def _commit(*_args: object) -> None:
            counts["commits"] += 1

        sa.event.listen(services.db.engine, "before_cursor_execute", _statement)
        sa.event.listen(services.db.engine, "commit", _commit)

        def work(plan: list[tuple[str, int]]) -> tuple[float, float]:
            Sender(stack.web_url, stack.api_secret).burst(plan)
            dispatcher.drain(queue)  # the hand-offs become RQ jobs, as a worker's thread does
            if listener.notified(services):  # handed off by notification: caught up instead
                listener.enqueue_catch_up(queue)
            worker = SimpleWorker([queue.rq], connection=queue.redis, serializer=queue.rq.serializer)
            cpu, wall = time.thread_time(), time.perf_counter()
            worker.work(burst=True, logging_level="WARNING")
            return time.thread_time() - cpu, time.perf_counter() - wall

        work([(shop, 5_800_000_000_000 + i) for i, shop in enumerate(SHOPS)])  # warm up
        plan = [(SHOPS[i % len(SHOPS)], 5_810_000_000_000 + i) for i in range(count)]
        counts.update(statements=0, commits=0)  # the warm-up's are not counted
        profiler = cProfile.Profile(time.thread_time) if profile else None
        if profiler:
            profiler.enable()
        cpu, wall = work(plan)
        if profiler:
            profiler.disable()
        assert stack.smtp is not None
        emails = stack.smtp.count() - len(SHOPS)
        print(
            f"{count} incidents, {emails} apologies: {cpu / count * 1000:.1f} ms CPU per incident "
            f"in the worker ({wall / count * 1000:.1f} ms wall); {counts['statements'] / count:.1f} SQL "
            f"statements and {counts['commits'] / count:.1f} commits per incident"
        )
        if profiler:
            out = run_dir / "jobs.pstats"
            profiler.dump_stats(out)
            stats = pstats.Stats(str(out))
            stats.sort_stats("cumulative").print_stats(r"(actions|plugin|rq|sqlalchemy/orm/session)", 45)
            print(f"profile: {out}")
        services.queue.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
