"""One scenario's world: the `Stack` (Amends as processes), the Shopify stand-in, the shop
installed, and the helpers the scenarios share (send, wait, judge, report, scan the logs).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from plugin.config import PROJECT_ROOT
from plugin.services import Services, build
from plugin.standin import StandIn
from tests.factories import make_shop
from tests.reliability import outcome as judge
from tests.reliability import traffic
from tests.reliability.harness import API_KEY, SHOP_DOMAIN, Stack
from tests.reliability.report import Section
from tests.services import flush_redis

# Scale: incidents per fault scenario, the length of the 30 s outages, RQ workers.
INCIDENTS = int(os.environ.get("RELIABILITY_INCIDENTS", "1000"))
OUTAGE_SECONDS = float(os.environ.get("RELIABILITY_OUTAGE_SECONDS", "30"))
WORKERS = int(os.environ.get("RELIABILITY_WORKERS", "3"))
# The deployment's SWEEP_SECONDS (production: 60). Lost work is found by the same sweeps and
# RQ maintenance, 6× as often: a recovery takes a minute or two, not several.
SWEEP_SECONDS = int(os.environ.get("RELIABILITY_SWEEP_SECONDS", "10"))
ACCESS_TOKEN = "shpat_reliability_" + "a1b2c3d4e5f60718293a4b5c6d7e8f90"
REFRESH_TOKEN = "shprt_reliability_" + "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@dataclass
class Deployment:
    stack: Stack
    standin: StandIn
    services: Services
    shop: str = SHOP_DOMAIN
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    senders: list[traffic.ShopifySender] = field(default_factory=list)
    engine: sa.Engine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = self.stack.engine()

    def sender(self, concurrency: int = 8) -> traffic.ShopifySender:
        sender = traffic.ShopifySender(self.stack.base_url, self.stack.api_secret, self.shop, concurrency)
        self.senders.append(sender)
        return sender

    def plan(self, count: int, **options: Any) -> traffic.Plan:
        return traffic.plan_incidents(count, self.rng, **options)

    def wait(self, plan: traffic.Plan, timeout: float) -> tuple[judge.Outcome, float]:
        return judge.wait_for_completion(self.engine, self.stack.smtp, self.standin, self.shop, plan, timeout)

    def settle(self, plan: traffic.Plan, seconds: float = 5.0) -> judge.Outcome:
        """Look again after a pause: a late retry that sends a second email shows up here."""
        time.sleep(seconds)
        return judge.collect(self.engine, self.stack.smtp, self.standin, self.shop, plan)

    def record(self, section: Section, out: judge.Outcome, sent: traffic.SendStats | None = None) -> None:
        section.add(**out.figures())
        if sent is not None:
            section.add(**sent.as_dict())
        stats = self.standin.stats()
        section.add(
            **{
                "Admin API calls": stats["calls"],
                "Admin API faults injected": sum(stats["faults"].values()),
                "Admin API throttled (bucket)": stats["throttled"],
                "SMTP 451 answers": self.stack.smtp.tempfailed,
                "worker kills / restarts": f"{self.stack.workers.killed} / {self.stack.workers.restarts}"
                if self.stack.workers
                else "-",
                "SWEEP_SECONDS": SWEEP_SECONDS,
            }
        )
        if out.duplicated:
            section.note(
                "duplicated: " + "; ".join(f"order {o}: {why}" for o, why in list(out.duplicated.items())[:5])
            )
        if out.incomplete:
            section.note("incomplete: " + out.examples())
            self.dump_incomplete(out)
        if out.needs_attention:
            section.note(f"needs attention: {out.needs_attention}")

    def set_customer(
        self, order_id: int, first: str, last: str, email: str, customer_id: int, phone: str | None = None
    ) -> None:
        """Make the stand-in's order `order_id` belong to this customer."""
        state = self.standin.shop(self.shop)
        with state.lock:
            order = state.generated_order(order_id)
            customer = dict(order["customer"])
            customer.update(
                id=f"gid://shopify/Customer/{customer_id}",
                legacyResourceId=str(customer_id),
                firstName=first,
                lastName=last,
                displayName=f"{first} {last}",
                email=email,
                phone=phone,
                defaultEmailAddress={**customer["defaultEmailAddress"], "emailAddress": email},
            )
            address = {**order["shippingAddress"], "firstName": first, "lastName": last}
            address["name"] = customer["displayName"]
            state.orders[order_id] = {
                "customer": customer,
                "email": email,
                "phone": phone,
                "shippingAddress": address,
            }

    def dump_incomplete(self, out: judge.Outcome, limit: int = 20) -> None:
        """The rows of a few incomplete incidents, next to the logs, to see why."""
        lines = []
        with self.engine.connect() as db:
            for order_id, why in list(out.incomplete.items())[:limit]:
                lines.append(f"== order {order_id}: {why}")
                rows = db.execute(sa.text("SELECT * FROM incidents WHERE order_id = :o"), {"o": order_id})
                for row in rows:
                    lines.append(f"incident {dict(row._mapping)}")
                    for sub in ("timeline_entries", "messages", "discount_codes", "tasks"):
                        query = sa.text(f"SELECT * FROM {sub} WHERE incident_id = :i")  # noqa: S608 - constants
                        for item in db.execute(query, {"i": row.id}):
                            lines.append(f"  {sub}: {dict(item._mapping)}")
        (self.stack.run_dir / "incomplete.txt").write_text("\n".join(lines) + "\n")

    def customer_emails(self) -> set[str]:
        with self.engine.connect() as db:
            return {
                row[0] for row in db.execute(sa.text("SELECT customer_email FROM incidents")) if row[0]
            } | {r.to for r in self.stack.smtp.snapshot()}

    def assert_logs_clean(self, extra_secrets: tuple[str, ...] = ()) -> dict[str, int]:
        """No token, secret, HMAC or full customer email in any process's output."""
        hmacs = set().union(*(s.hmacs for s in self.senders)) if self.senders else set()
        return assert_logs_clean(
            self.stack, self.customer_emails(), (ACCESS_TOKEN, REFRESH_TOKEN, *extra_secrets), hmacs
        )


EMAIL_SHAPE = re.compile(rb"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
TOKEN_SHAPE = re.compile(rb"shp(?:at|rt|ss|ca|pa)_[A-Za-z0-9_]{16,}")
HMAC_SHAPE = re.compile(rb"[A-Za-z0-9+/]{43}=")


def assert_logs_clean(
    stack: Stack,
    emails: set[str],
    tokens: tuple[str, ...],
    hmacs: set[str] = frozenset(),  # type: ignore[assignment]
) -> dict[str, int]:
    """No token, secret, HMAC or full customer email in any process's output. Searched by
    shape (every email-, token- and HMAC-shaped string in the logs), then matched."""
    secrets = {"SHOPIFY_API_SECRET": stack.api_secret, "SECRET_KEY": stack.secret_key}
    wanted_emails = {e.lower().encode() for e in emails if e}
    wanted_hmacs = {h.encode() for h in hmacs}
    findings: dict[str, set[str]] = {}
    scanned = 0
    for path in sorted(stack.run_dir.glob("*.log")):
        data = path.read_bytes()
        scanned += len(data)
        found = findings.setdefault(path.name, set())
        for name, value in secrets.items():
            if value and value.encode() in data:
                found.add(name)
        for token in tokens:
            if token.encode() in data:
                found.add("token " + token[:10] + "…")
        for match in TOKEN_SHAPE.findall(data):
            found.add("token " + match[:10].decode() + "…")
        for match in EMAIL_SHAPE.findall(data):
            if match.lower() in wanted_emails:
                found.add("customer email " + match[:3].decode() + "…")
        for match in HMAC_SHAPE.findall(data):
            if match in wanted_hmacs:
                found.add("an X-Shopify-Hmac-Sha256 value")
    findings = {name: items for name, items in findings.items() if items}
    assert not findings, f"secrets or personal data in the logs: {findings}"
    return {
        "log bytes scanned": scanned,
        "customer emails searched": len(wanted_emails),
        "HMACs searched": len(wanted_hmacs),
    }


ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "reliability"
# One folder per pytest run, so that two runs at once never mix (or delete) each other's logs.
RUN_ID = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"


def artifacts_dir(name: str) -> Path:
    """Where a scenario's process logs go: kept after the run (test-artifacts/ is ignored by
    git); runs older than a day are removed."""
    if ARTIFACTS.exists():
        for old in ARTIFACTS.iterdir():
            if old.is_dir() and time.time() - old.stat().st_mtime > 86_400:
                shutil.rmtree(old, ignore_errors=True)
    path = ARTIFACTS / RUN_ID / re.sub(r"[^\w.-]+", "_", name)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


@contextmanager
def deploy(
    run_dir: Path, redis_db: int, workers: int = WORKERS, **stack_options: Any
) -> Iterator[Deployment]:
    """A fresh Amends deployment with its stand-in and an installed shop, torn down after."""
    from redis import Redis

    from tests.services import REDIS_BASE_URL

    stack_options["extra_env"] = {"SWEEP_SECONDS": str(SWEEP_SECONDS), **stack_options.get("extra_env", {})}
    redis = Redis.from_url(f"{REDIS_BASE_URL}/{redis_db}")
    flush_redis(redis)
    standin = StandIn(client_id=API_KEY, seed=11).start()
    services: Services | None = None
    try:
        with Stack(
            run_dir, redis_db, rq_workers=workers, shopify_base=standin.admin_base, **stack_options
        ) as stack:
            standin.client_secret = stack.api_secret
            services = build(stack.config())
            make_shop(
                services,
                domain=SHOP_DOMAIN,
                token=ACCESS_TOKEN,
                test_mode=False,
                expires_in=timedelta(hours=1),
                refresh_token=REFRESH_TOKEN,
                name="Steady Shop",
                email="owner@steady-shop.example",
            )
            state = standin.shop(SHOP_DOMAIN)
            with state.lock:
                state.seed_orders(0)  # no open shipments: the scan opens nothing of its own
                state.refresh_tokens[REFRESH_TOKEN] = ACCESS_TOKEN
            standin.set_tokens(SHOP_DOMAIN, {ACCESS_TOKEN})
            deployment = Deployment(stack, standin, services)
            try:
                yield deployment
            finally:
                deployment.engine.dispose()
    finally:
        if services is not None:
            services.close()
        standin.stop()
        flush_redis(redis)
        redis.close()
