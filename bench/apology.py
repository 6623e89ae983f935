"""B2. Time to apology: from the webhook POST to the apology accepted by the SMTP server.

A steady 20 late-delivery incidents per second for 60 s (15 s with --quick), each for its
own order and customer, spread over several shops (one Standard-plan shop cannot pay for 20
incidents a second: 100 points/s is about 3), with the stand-in adding 100 ms to every Admin
API call. gunicorn (2 workers) takes the webhooks; `amends worker` processes do the rest.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.cpu import CpuMeter
from bench.intake import postgres_backends
from bench.pipeline import (
    Sender,
    customer_email,
    distribution,
    job_stages,
    timeline_stages,
    wait_for_emails,
    warm_up,
)
from bench.stack import Stack, peak_rss_mb, rss_mb

TARGETS = {"p50_s": 1.0, "p95_s": 2.0}
RATE = 20.0
SHOPS = 10
LATENCY_MS = 100.0
DEFAULT_WORKERS = 10


def run(
    run_dir: Path, quick: bool, workers: int | None = None, profile: bool = False, log: Any = print
) -> dict[str, Any]:
    seconds = 15.0 if quick else 60.0
    workers = workers or DEFAULT_WORKERS
    count = int(RATE * seconds)
    shops = [f"bench-shop-{i}.myshopify.com" for i in range(SHOPS)]
    plan = [(shops[i % SHOPS], 5_500_000_000_000 + i) for i in range(count)]
    email_to_order = {customer_email(order_id): order_id for _, order_id in plan}
    assert len(email_to_order) == count, "customer addresses must be distinct"

    with Stack(run_dir / "b2", standin_latency_ms=LATENCY_MS, standin_plan="standard") as stack:
        for shop in shops:
            stack.install_shop(shop)
        web = stack.start_web()
        children = stack.start_workers(workers)
        stack.wait_for_workers(workers)
        warm_up(stack, shops, 5_590_000_550_000)  # customers distinct from the plan's
        stack.standin("/_reset", {})
        assert stack.smtp is not None
        stack.smtp.clear()
        engine = stack.engine()
        redis_pid = int(stack.redis().info("server")["process_id"])
        meter = CpuMeter(
            {
                "web": lambda: [web.pid, *stack.gunicorn_worker_pids(web)],
                "workers": lambda: [c.pid for c in children],
                "postgres": lambda: postgres_backends(engine),
                "redis": lambda: [redis_pid],  # shared: other runs' use of Redis counts too
            }
        )
        log(
            f"  B2: {count} incidents at {RATE:.0f}/s over {len(shops)} shops, {workers} workers, "
            f"Admin API latency {LATENCY_MS:.0f} ms"
        )
        started = time.time()
        meter.start()
        spies = []
        if profile:
            from bench import profile as profiler

            spies = profiler.record([c.pid for c in children], seconds, run_dir / "b2" / "profile", "worker")
        sender = Sender(stack.web_url, stack.api_secret)
        achieved = sender.steady(plan, RATE)
        # Wait for the backlog too (bounded), so the distribution covers every incident.
        done = wait_for_emails(stack, count, timeout=max(60.0, 4 * seconds), progress=lambda n: None)
        cpu = meter.stop()
        for spy in spies:
            spy.wait(60)
        received = stack.smtp.snapshot()
        stats = stack.standin("/_stats")

        posted = {s.order_id: s.at for s in sender.sent}
        latencies: list[float] = []
        per_order: dict[int, int] = {}
        for message in received:
            for address in message.to:
                order_id = email_to_order.get(address)
                if order_id is not None:
                    per_order[order_id] = per_order.get(order_id, 0) + 1
                    if per_order[order_id] == 1 and order_id in posted:
                        latencies.append(message.at - posted[order_id])
        stages = timeline_stages(engine, posted)
        jobs = job_stages(stack, started)
        memory = {
            name: {"rss_mb": rss_mb(pid), "peak_rss_mb": peak_rss_mb(pid)}
            for name, pid in stack.worker_pids().items()
        }
        engine.dispose()

    time_to_apology = distribution(latencies)
    missing = count - len(latencies)
    acknowledged = [s.acknowledged_after for s in sender.sent if s.status == 200]
    first = min((m.at for m in received), default=started)
    last = max((m.at for m in received), default=started)
    results: dict[str, Any] = {
        "incidents": count,
        "shops": len(shops),
        "target_rate": RATE,
        "achieved_rate": achieved,
        "seconds": seconds,
        "workers": workers,
        "standin_latency_ms": LATENCY_MS,
        "emails": len(latencies),
        # Apologies per second while they were going out: below the arrival rate, a backlog grows.
        "apology_rate": (len(latencies) - 1) / (last - first) if last > first else 0.0,
        "missing": missing,
        "duplicate_emails": sum(n - 1 for n in per_order.values() if n > 1),
        "non_200_posts": sum(1 for s in sender.sent if s.status != 200),
        "all_done_in_time": done,
        "time_to_apology": time_to_apology,
        "breakdown": {
            "webhook acknowledged (POST → 200)": distribution(acknowledged),
            **{f"timeline: {event}": value for event, value in stages.items()},
            "email accepted by SMTP": time_to_apology,
        },
        "jobs": jobs,
        "admin_api": {
            "calls": stats["calls"],
            "calls_per_incident": stats["calls"] / count,
            "root_fields": stats["root_fields"],
            "throttled": stats["throttled"],
            "points_per_incident": stats["points_spent"] / count,
            "points_by_root_field": stats.get("points_by_root_field", {}),
        },
        # Per apology sent: work still under way at the end is spread over those that finished.
        "cpu_ms_per_incident": {
            k: v * 1000 / max(1, len(latencies)) for k, v in cpu.items() if k not in ("machine_total",)
        },
        "machine_busy_share": cpu["machine_busy"] / max(1e-9, cpu["machine_total"]),
        "worker_memory": memory,
        "worker_memory_mb": sum(m["rss_mb"] or 0 for m in memory.values()),
    }
    if profile:
        from bench import profile as profiler

        results["profile"] = profiler.summarize(
            sorted((run_dir / "b2" / "profile").glob("worker-*.txt")), top=40
        )
    results["targets"] = TARGETS
    results["verdict"] = {
        "p50": time_to_apology.get("p50_s", 1e9) <= TARGETS["p50_s"],
        "p95": time_to_apology.get("p95_s", 1e9) <= TARGETS["p95_s"],
        "all_sent": missing == 0 and results["duplicate_emails"] == 0,
    }
    log(
        f"  B2: {len(latencies)}/{count} apologies; p50 {time_to_apology.get('p50_s', 0):.2f} s, "
        f"p95 {time_to_apology.get('p95_s', 0):.2f} s, max {time_to_apology.get('max_s', 0):.2f} s"
    )
    return results
