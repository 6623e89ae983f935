"""What B2 and B3 share: sending late-delivery webhooks on a schedule, waiting for the
apologies at the SMTP server, and reading where the time went (RQ's job records, the
incidents' timelines, the stand-in's call log)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
import sqlalchemy as sa

from bench.stack import Stack
from bench.wrk import percentile
from plugin.samples import fulfillment_event
from plugin.signing import webhook_signature
from plugin.standin import PLANS
from plugin.standin.shop import ShopState

TOPIC = "fulfillment_events/create"


@dataclass
class Sent:
    order_id: int
    shop: str
    at: float  # time.time() just before the POST
    status: int = 0
    acknowledged_after: float = 0.0


@dataclass
class Sender:
    """Posts signed `delayed` events, each for its own order, from a few threads."""

    url: str
    secret: str
    threads: int = 8
    sent: list[Sent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _local: threading.local = field(default_factory=threading.local)

    def post(self, shop: str, order_id: int) -> None:
        payload = fulfillment_event("delayed", order_id=order_id, fulfillment_id=order_id - 1_000_000_000_000)
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": TOPIC,
            "X-Shopify-Shop-Domain": shop,
            "X-Shopify-API-Version": "2026-07",
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-Event-Id": str(uuid.uuid4()),
            "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(),
            "X-Shopify-Hmac-Sha256": webhook_signature(body, self.secret),
        }
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        record = Sent(order_id, shop, time.time())
        try:
            response = session.post(self.url + "/webhooks", data=body, headers=headers, timeout=10)
            record.status = response.status_code
        except requests.RequestException:
            record.status = -1
        record.acknowledged_after = time.time() - record.at
        with self._lock:
            self.sent.append(record)

    def steady(self, plan: list[tuple[str, int]], rate: float) -> float:
        """Post `plan` at `rate` per second on a fixed schedule; returns the rate achieved."""
        started = time.monotonic()
        with ThreadPoolExecutor(self.threads) as pool:
            for number, (shop, order_id) in enumerate(plan):
                due = started + number / rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                pool.submit(self.post, shop, order_id)
        elapsed = time.monotonic() - started
        return len(plan) / elapsed if elapsed else 0.0

    def burst(self, plan: list[tuple[str, int]]) -> float:
        """Post all of `plan` as fast as the threads go; returns the seconds it took."""
        started = time.monotonic()
        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(lambda item: self.post(*item), plan))
        return time.monotonic() - started


def warm_up(stack: Stack, shops: list[str], first_order: int, timeout: float = 120) -> None:
    """One incident per shop through the whole pipeline, so every worker process has
    imported its jobs and opened its connections before anything is measured."""
    assert stack.smtp is not None
    sender = Sender(stack.web_url, stack.api_secret)
    sender.burst([(shop, first_order + i) for i, shop in enumerate(shops)])
    if not wait_for_emails(stack, len(shops), timeout, lambda n: None):
        raise RuntimeError(f"warm-up: {stack.smtp.count()} of {len(shops)} apologies arrived")
    time.sleep(1)


def customer_email(order_id: int) -> str:
    """The address the stand-in gives this order's customer (stable per order id)."""
    return str(
        ShopState("any.myshopify.com", PLANS["standard"]).generated_order(order_id)["customer"]["email"]
    )


def wait_for_emails(stack: Stack, expected: int, timeout: float, progress: Callable[[int], None]) -> bool:
    assert stack.smtp is not None
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        count = stack.smtp.count()
        if count != last:
            progress(count)
            last = count
        if count >= expected:
            return True
        time.sleep(0.25)
    return False


def distribution(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}
    return {
        "count": len(ordered),
        "p50_s": percentile(ordered, 50),
        "p95_s": percentile(ordered, 95),
        "p99_s": percentile(ordered, 99),
        "max_s": ordered[-1],
        "mean_s": sum(ordered) / len(ordered),
    }


def _epoch(value: Any) -> float:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return float(value.timestamp())


def timeline_stages(engine: sa.Engine, posted: dict[int, float]) -> dict[str, dict[str, float]]:
    """For each timeline event kind: seconds from the webhook POST to its first entry."""
    query = sa.text(
        "SELECT i.order_id, e.event, min(e.at) FROM timeline_entries e "
        "JOIN incidents i ON i.id = e.incident_id GROUP BY i.order_id, e.event"
    )
    found: dict[str, list[float]] = defaultdict(list)
    with engine.connect() as connection:
        for order_id, event, at in connection.execute(query):
            if order_id in posted:
                found[event].append(_epoch(at) - posted[order_id])
    stages = {event: distribution(values) for event, values in found.items()}
    return dict(sorted(stages.items(), key=lambda item: item[1].get("p50_s", 0)))


def job_stages(stack: Stack, since: float) -> dict[str, Any]:
    """Per job function: time queued before a worker took it, and time it ran."""
    from rq import Queue
    from rq.job import Job
    from rq.registry import FailedJobRegistry, FinishedJobRegistry
    from rq.serializers import JSONSerializer

    redis = stack.redis()
    queue = Queue("amends", connection=redis, serializer=JSONSerializer)
    waits: dict[str, list[float]] = defaultdict(list)
    runs: dict[str, list[float]] = defaultdict(list)
    failed: Counter[str] = Counter()
    finished_ids = FinishedJobRegistry(queue=queue).get_job_ids()
    failed_ids = FailedJobRegistry(queue=queue).get_job_ids()
    for ids, bucket in ((finished_ids, None), (failed_ids, failed)):
        for start in range(0, len(ids), 500):
            for job in Job.fetch_many(ids[start : start + 500], connection=redis, serializer=JSONSerializer):
                if job is None:
                    continue
                name = (job.func_name or "?").rsplit(".", 1)[-1]
                if bucket is not None:
                    reason = (job.exc_info or "").strip().splitlines()[-1:] or ["?"]
                    bucket[f"{name}: {reason[0][:160]}"] += 1
                    continue
                if job.enqueued_at is None or job.started_at is None or job.ended_at is None:
                    continue
                if _epoch(job.enqueued_at) < since or job.started_at < job.enqueued_at:
                    continue  # earlier, or scheduled ahead (periodic jobs)
                waits[name].append((job.started_at - job.enqueued_at).total_seconds())
                runs[name].append((job.ended_at - job.started_at).total_seconds())
    redis.close()
    return {
        "queue_wait": {name: distribution(values) for name, values in waits.items()},
        "run": {name: distribution(values) for name, values in runs.items()},
        "failed": dict(failed),
    }


def count_rows(engine: sa.Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608


def log_mentions(stack: Stack, patterns: tuple[str, ...]) -> dict[str, int]:
    """How many lines of the workers' logs mention each pattern (retries show up here even
    when the job finally succeeded)."""
    found: Counter[str] = Counter()
    for path in stack.run_dir.glob("worker-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            for pattern in patterns:
                if pattern in line:
                    found[pattern] += 1
    return {pattern: found[pattern] for pattern in patterns}
