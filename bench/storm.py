"""B3. Storm: a courier fails, and 5,000 late-delivery incidents arrive for one shop at once
(300 with --quick), the stand-in enforcing the Standard plan (bucket 2,000 points, restoring
100 points/s) with 100 ms per call.

The lower bound for the apologies is the Admin API points Amends actually spent until the last
one went out, divided by the restore rate: no schedule can spend them faster. (The bucket is
full when the storm starts, so (points − 2,000) / rate is the strictly lower bound; both are
reported.) In a storm the order tags wait behind the apologies (actions/follow_up.py) and then
go to Shopify in bulk operations (actions/order_tags.py), so the run waits for them too:
points per incident count everything the storm cost, and the time the last tag went in is
reported as well.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.pipeline import Sender, customer_email, job_stages, log_mentions, wait_for_emails, warm_up
from bench.stack import Stack, peak_rss_mb

SHOP = "storm-shop.myshopify.com"
TARGETS = {"ratio_to_bound": 1.15, "points_per_incident": 15.0, "peak_rss_mb": 200.0}
LATENCY_MS = 100.0
DEFAULT_WORKERS = 4


def run(
    run_dir: Path, quick: bool, workers: int | None = None, incidents: int | None = None, log: Any = print
) -> dict[str, Any]:
    count = incidents or (300 if quick else 5000)
    workers = workers or DEFAULT_WORKERS
    plan = [(SHOP, 5_600_000_000_000 + i) for i in range(count)]
    email_to_order = {customer_email(order_id): order_id for _, order_id in plan}
    assert len(email_to_order) == count, "customer addresses must be distinct"

    with Stack(run_dir / "b3", standin_latency_ms=LATENCY_MS, standin_plan="standard") as stack:
        stack.install_shop(SHOP)
        stack.install_shop("warmup-shop.myshopify.com")
        stack.start_web()
        stack.start_workers(workers)
        stack.wait_for_workers(workers)
        warm_up(stack, ["warmup-shop.myshopify.com"], 5_690_000_550_000)
        stack.standin("/_reset", {})
        assert stack.smtp is not None
        stack.smtp.clear()

        log(
            f"  B3: {count} incidents for one Standard-plan shop, {workers} workers, "
            f"latency {LATENCY_MS:.0f} ms"
        )
        started = time.time()
        sender = Sender(stack.web_url, stack.api_secret, threads=8)
        posting = sender.burst(plan)
        log(f"  B3: all {count} webhooks acknowledged in {posting:.1f} s")
        # Generous: the bound at ~30 points an incident, twice over, and a minute more.
        timeout = 2 * count * 30 / 100 + 60
        next_report = [time.monotonic() + 30]

        def progress(n: int) -> None:
            if time.monotonic() >= next_report[0]:
                log(f"  B3: {n}/{count} apologies after {time.time() - started:.0f} s")
                next_report[0] += 30

        done = wait_for_emails(stack, count, timeout, progress)
        finished = time.time()
        received = stack.smtp.snapshot()
        last_email = max((m.at for m in received), default=finished)
        at_last_apology = stack.standin("/_stats")
        # The tags that waited: at worst 10 points each at the restore rate, and a minute more.
        deadline = time.monotonic() + count * 10 / 100 + 60
        while time.monotonic() < deadline:
            stats = stack.standin("/_stats")
            if tagged_orders(stats) >= count:
                break
            time.sleep(1)
        tags_done_s = time.time() - started
        stats = stack.standin("/_stats")
        discounts = stack.standin(f"/_discounts?shop={SHOP}")["discounts"]
        jobs = job_stages(stack, started)
        peaks = {name: peak_rss_mb(pid) for name, pid in stack.worker_pids().items()}
        mentions = log_mentions(stack, ("THROTTLED", "RetryableError", "Traceback", "needs attention"))

    per_order: Counter[int] = Counter()
    for message in received:
        for address in message.to:
            if address in email_to_order:
                per_order[email_to_order[address]] += 1
    codes_per_customer: Counter[str] = Counter()
    codes_seen: Counter[str] = Counter()
    for entry in discounts:
        codes_seen[entry["code"].lower()] += 1
        customers = ((entry.get("input") or {}).get("context") or {}).get("customers", {}).get("add") or []
        for customer in customers:
            codes_per_customer[customer] += 1
    points = float(at_last_apology["shops"].get(SHOP, {}).get("points_spent", 0.0))
    total_points = float(stats["shops"].get(SHOP, {}).get("points_spent", 0.0))
    restore = 100.0
    bound = points / restore
    elapsed = last_email - started
    # When each customer had their apology: a storm is long, and the first answers matter.
    times = sorted(m.at - started for m in received)
    apology_s = {
        f"p{p}": times[min(len(times) - 1, int(len(times) * p / 100))] if times else 0.0 for p in (10, 50, 90)
    }
    throttled_failures = {k: v for k, v in jobs["failed"].items() if "THROTTLED" in k or "hrottl" in k}
    results: dict[str, Any] = {
        "incidents": count,
        "workers": workers,
        "standin_latency_ms": LATENCY_MS,
        "posting_s": posting,
        "emails": len(per_order),
        "all_done_in_time": done,
        "elapsed_s": elapsed,
        "apology_s": apology_s,
        "points_spent": points,
        "points_spent_with_tags": total_points,
        "tags_added": tagged_orders(stats),
        "tags_by_tagsAdd_call": stats["root_fields"].get("tagsAdd", 0),
        "tags_in_bulk_operations": stats.get("bulk_lines", 0),
        "bulk_operations": stats["root_fields"].get("bulkOperationRunMutation", 0),
        "tags_done_s": tags_done_s,
        "restore_rate": restore,
        "lower_bound_s": bound,
        "lower_bound_with_full_bucket_s": max(0.0, points - 2000) / restore,
        "ratio_to_bound": elapsed / bound if bound else 0.0,
        "points_per_incident": total_points / count,
        "points_per_incident_by_last_apology": points / count,
        "points_by_root_field": stats.get("points_by_root_field", {}),
        "calls": stats["calls"],
        "root_fields": stats["root_fields"],
        "throttled_answers": stats["throttled"],
        "taken_answers": stats["taken"],
        "codes_created": len(discounts),
        "duplicate_emails": sum(n - 1 for n in per_order.values() if n > 1),
        "duplicate_codes": sum(n - 1 for n in codes_per_customer.values() if n > 1)
        + sum(n - 1 for n in codes_seen.values() if n > 1),
        "failed_jobs": sum(jobs["failed"].values()),
        "failed_job_reasons": jobs["failed"],
        "failed_because_throttled": sum(throttled_failures.values()),
        "worker_log_mentions": mentions,
        "queue_wait": jobs["queue_wait"],
        "job_run": jobs["run"],
        "peak_rss_mb": peaks,
        "peak_rss_mb_max": max((p or 0) for p in peaks.values()) if peaks else 0.0,
    }
    results["targets"] = TARGETS
    results["verdict"] = {
        "all_sent": len(per_order) == count,
        "all_tagged": results["tags_added"] >= count,
        "within_bound": done and results["ratio_to_bound"] <= TARGETS["ratio_to_bound"],
        "points_per_incident": results["points_per_incident"] <= TARGETS["points_per_incident"],
        "no_duplicates": results["duplicate_emails"] == 0 and results["duplicate_codes"] == 0,
        "no_failed_jobs": results["failed_jobs"] == 0,
        "rss": results["peak_rss_mb_max"] < TARGETS["peak_rss_mb"],
    }
    log(
        f"  B3: {len(per_order)}/{count} apologies in {elapsed:.0f} s; bound {bound:.0f} s "
        f"({points:,.0f} points); {results['ratio_to_bound']:.2f}× the bound"
    )
    return results


def tagged_orders(stats: dict[str, Any]) -> int:
    """Orders of the storm's shop holding a tag (each gets one), however it was added."""
    return int(stats["shops"].get(SHOP, {}).get("tags", 0))
