"""Fault scenarios against Amends running as real processes (gunicorn, supervised RQ workers,
PostgreSQL and Redis behind cuttable proxies, a failing SMTP server, the Shopify stand-in).

Each prints what it tried and what it found in the "reliability report" at the end of the
run. Every incident must end complete, with exactly one apology email and one code (see
`outcome.py` for what "complete" checks). Scale: RELIABILITY_INCIDENTS (default 1,000),
RELIABILITY_OUTAGE_SECONDS (default 30; the SMTP outage is 4× then 2× that).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.reliability import outcome as judge
from tests.reliability import report, traffic
from tests.reliability.deployment import (
    ACCESS_TOKEN,
    INCIDENTS,
    OUTAGE_SECONDS,
    Deployment,
    artifacts_dir,
    deploy,
)
from tests.reliability.smtp import ACCEPT, REFUSE, TEMPFAIL

# A safety net well above what a scenario needs (pyproject's default is 300 s per test).
SCENARIO_TIMEOUT = int(900 + 2.5 * INCIDENTS + 10 * OUTAGE_SECONDS)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(SCENARIO_TIMEOUT)]


def completion_timeout(incidents: int, extra: float = 0.0) -> float:
    """Generous but bounded: 1.5 s per incident on 2 busy cores, plus fixed slack."""
    return 180 + incidents * 1.5 + extra


def assert_all_complete(out: judge.Outcome) -> None:
    assert out.lost == 0, f"{out.lost} incidents incomplete: {out.examples()}"
    assert out.extra_incidents == 0
    assert out.duplicate_codes == 0


@pytest.fixture
def run_dir(request: pytest.FixtureRequest) -> Path:
    return artifacts_dir(request.node.name)


def test_redelivery_and_disorder(run_dir: Path, reliability_redis: int) -> None:
    section = report.section(
        "Redelivery and disorder",
        f"{INCIDENTS} incidents (late delivery, return, refund in turn); every webhook delivered 3 times, "
        "all shuffled, 20 % of the copies under a new webhook id; 1 in 5 also gets a second signal for the "
        "same order; 1 in 5 late deliveries/returns a resolving signal that happened later (delivered, "
        "returns/close): half of those shuffled in with the rest, half (3 copies, shuffled) once the "
        "first wave is done",
    )
    with deploy(run_dir, reliability_redis) as d:
        plan = d.plan(INCIDENTS, join_every=5, resolve_every=5)
        hooks = traffic.redeliveries(plan, d.rng, copies=3, new_id_share=0.2)
        resolved_late = set(sorted(plan.resolved)[1::2])
        first = [h for h in hooks if not (h.role == "resolve" and h.incident in resolved_late)]
        second = [h for h in hooks if h.role == "resolve" and h.incident in resolved_late]
        wave = traffic.Plan(plan.orders, plan.webhooks, plan.joined, plan.resolved - resolved_late)
        started = time.monotonic()
        sender = d.sender()
        sender.deliver(first, deadline=started + 600)
        d.wait(wave, completion_timeout(INCIDENTS))
        sender.deliver(second, deadline=time.monotonic() + 600)
        out, _ = d.wait(plan, completion_timeout(len(second)))
        done_at = time.monotonic()
        out = d.settle(plan)
        problems = judge.consistency_problems(d.engine)
        d.record(section, out, sender.stats)
        section.add(
            **{
                "webhooks sent (with copies)": len(hooks),
                "seconds until all complete": round(done_at - started, 1),
                "half-written rows": problems or "none",
            }
        )
        section.add(**d.assert_logs_clean())
        assert not sender.stats.undelivered
        assert_all_complete(out)
        assert out.duplicate_emails == 0
        # Every resolution sent after its apology brought exactly one "fixed" notice.
        assert out.fixed_emails >= len(resolved_late)
        assert out.fixed_emails + out.settled_early == len(plan.resolved)
        assert problems == {}


def test_worker_crashes(run_dir: Path, reliability_redis: int) -> None:
    kill_every = (2.0, 5.0)
    section = report.section(
        "Worker crashes",
        f"{INCIDENTS} incidents sent at 10/s; a random RQ worker (of 3) SIGKILLed every "
        f"{kill_every[0]:g}-{kill_every[1]:g} s while they arrive and for 60 s after; the supervisor starts "
        "a new one each time; then the recovery is timed",
    )
    rng = random.Random(3)
    with deploy(run_dir, reliability_redis) as d:
        plan = d.plan(INCIDENTS)
        sender = d.sender()
        started = time.monotonic()
        thread = traffic.deliver_in_background(sender, plan.webhooks, started + 600, rate=10.0)
        deadline = started + completion_timeout(INCIDENTS, extra=120)
        # Kills go on while the webhooks arrive and for a minute after (or until all are
        # complete); then the workers are left alone, and the recovery is timed.
        sending_ends = started + INCIDENTS / 10.0
        last_kill = started
        while time.monotonic() < min(deadline, sending_ends + 60):
            time.sleep(rng.uniform(*kill_every))
            out = judge.collect(d.engine, d.stack.smtp, d.standin, d.shop, plan)
            if out.complete == out.planned:
                break
            assert d.stack.workers is not None
            d.stack.workers.kill_one(rng)
            last_kill = time.monotonic()
        complete_at_last_kill = judge.collect(d.engine, d.stack.smtp, d.standin, d.shop, plan).complete
        thread.join(60)
        out, _ = d.wait(plan, max(0.0, deadline - time.monotonic()))
        done_at = time.monotonic()
        out = d.settle(plan, 10)
        d.record(section, out, sender.stats)
        duplicates = d.stack.smtp.duplicates()
        section.add(
            **{
                "seconds until all complete": round(done_at - started, 1),
                "complete when the kills stopped": complete_at_last_kill,
                "seconds from the last kill to complete": round(max(0.0, done_at - last_kill), 1),
                "consistency problems": judge.consistency_problems(d.engine) or "none",
            }
        )
        if duplicates:
            section.note(
                "each duplicate is the same Message-ID sent again: a worker killed after the SMTP server "
                "accepted the message and before the 'sent' state was committed (the one window "
                "plugin/sending.py documents); mail clients fold messages with one Message-ID"
            )
        section.add(**d.assert_logs_clean())
        assert_all_complete(out)
        # Emails: the documented window allows at most one duplicate per kill that landed in it.
        assert out.duplicate_emails <= (d.stack.workers.killed if d.stack.workers else 0)
        assert judge.consistency_problems(d.engine) == {}


def _outage_run(
    d: Deployment,
    plan: traffic.Plan,
    cut: Callable[[], None],
    restore: Callable[[], None],
    lead: float,
) -> tuple[traffic.ShopifySender, dict[str, object], float, float]:
    """Send `plan` spread over lead + outage + lead seconds; cut at `lead`, restore after
    OUTAGE_SECONDS. Returns the sender, answers seen during the outage, and the times."""
    sender = d.sender()
    window = lead * 2 + OUTAGE_SECONDS
    rate = len(plan.webhooks) / window
    started = time.monotonic()
    thread = traffic.deliver_in_background(sender, plan.webhooks, started + window + 600, rate=rate)
    time.sleep(lead)
    before = dict(sender.stats.statuses)
    cut()
    cut_at = time.monotonic()
    time.sleep(OUTAGE_SECONDS)
    during = {k: v - before.get(k, 0) for k, v in sender.stats.statuses.items() if v - before.get(k, 0)}
    restore()
    restored_at = time.monotonic()
    thread.join(window + 600)
    return sender, during, cut_at, restored_at


def test_redis_outage_during_intake(run_dir: Path, reliability_redis: int) -> None:
    section = report.section(
        "Redis outage during intake",
        f"{INCIDENTS} incidents' webhooks spread over {OUTAGE_SECONDS * 2 + 20:g} s; Redis cut (connections "
        f"refused, open ones dropped) for {OUTAGE_SECONDS:g} s in the middle",
    )
    with deploy(run_dir, reliability_redis) as d:
        plan = d.plan(INCIDENTS)
        proxy = d.stack.redis_proxy
        assert proxy is not None
        sender, during, _cut_at, restored_at = _outage_run(d, plan, proxy.cut, proxy.restore, lead=10)
        out, _took = d.wait(plan, completion_timeout(INCIDENTS))
        recovered = time.monotonic()
        out = d.settle(plan)
        with d.engine.connect() as db:
            recorded = {row[0] for row in db.execute(sa.text("SELECT webhook_id FROM deliveries"))}
        d.record(section, out, sender.stats)
        section.add(
            **{
                "answers during the outage": during,
                "acknowledged but not recorded": len(sender.stats.acknowledged - recorded),
                "seconds from Redis back to all complete": round(recovered - restored_at, 1),
            }
        )
        section.add(**d.assert_logs_clean())
        # Every webhook got an answer: 200 (recorded) or 503 (not recorded, Shopify retries).
        assert set(during) <= {"200", "503"}, during
        assert sender.stats.acknowledged <= recorded
        assert not sender.stats.undelivered
        assert_all_complete(out)
        assert out.duplicate_emails == 0


def test_database_outage(run_dir: Path, reliability_redis: int) -> None:
    section = report.section(
        "Database outage",
        f"{INCIDENTS} incidents' webhooks spread over {OUTAGE_SECONDS * 2 + 20:g} s; PostgreSQL cut "
        f"(connections refused, open ones dropped) for {OUTAGE_SECONDS:g} s in the middle, for the web "
        "and the workers alike",
    )
    with deploy(run_dir, reliability_redis) as d:
        plan = d.plan(INCIDENTS)
        proxy = d.stack.pg_proxy
        assert proxy is not None
        sender, during, _cut_at, restored_at = _outage_run(d, plan, proxy.cut, proxy.restore, lead=10)
        out, _took = d.wait(plan, completion_timeout(INCIDENTS))
        recovered = time.monotonic()
        out = d.settle(plan)
        problems = judge.consistency_problems(d.engine)
        d.record(section, out, sender.stats)
        section.add(
            **{
                "answers during the outage": during,
                "seconds from PostgreSQL back to all complete": round(recovered - restored_at, 1),
                "half-written rows": problems or "none",
            }
        )
        section.add(**d.assert_logs_clean())
        # During the outage nothing can be recorded, so nothing may be acknowledged.
        assert "200" not in during or during.get("200", 0) <= 8, during  # requests already past the insert
        assert set(during) <= {"200", "503"}, during
        assert not sender.stats.undelivered
        assert_all_complete(out)
        assert out.duplicate_emails == 0
        assert problems == {}


def test_smtp_outage(run_dir: Path, reliability_redis: int) -> None:
    tempfail, refuse = 4 * OUTAGE_SECONDS, 2 * OUTAGE_SECONDS
    section = report.section(
        "SMTP outage",
        f"{INCIDENTS} incidents; the SMTP server answers 451 to every message for {tempfail:g} s, "
        f"then refuses connections for {refuse:g} s, then accepts",
    )
    with deploy(run_dir, reliability_redis) as d:
        plan = d.plan(INCIDENTS)
        d.stack.smtp.set_mode(TEMPFAIL)
        started = time.monotonic()
        sender = d.sender()
        thread = traffic.deliver_in_background(sender, plan.webhooks, started + 600, rate=20.0)
        time.sleep(tempfail)
        d.stack.smtp.set_mode(REFUSE)
        time.sleep(refuse)
        d.stack.smtp.set_mode(ACCEPT)
        back = time.monotonic()
        thread.join(600)
        out, _ = d.wait(plan, completion_timeout(INCIDENTS, extra=600))
        recovered = time.monotonic()
        out = d.settle(plan)
        d.record(section, out, sender.stats)
        received = d.stack.smtp.snapshot()
        section.add(
            **{
                "emails accepted during the outage": sum(1 for r in received if r.at < back),
                "seconds from SMTP back to every email delivered": round(recovered - back, 1),
            }
        )
        section.add(**d.assert_logs_clean())
        assert_all_complete(out)
        assert out.duplicate_emails == 0
        assert d.stack.smtp.tempfailed > 0  # the outage was felt


def test_shopify_faults(run_dir: Path, reliability_redis: int) -> None:
    faults = {"500": 0.03, "502": 0.02, "503": 0.03, "500_after": 0.02, "429": 0.05, "throttled": 0.05}
    section = report.section(
        "Shopify faults",
        f"{INCIDENTS} incidents; 20 % of Admin API calls fail: {faults} (429/503 with Retry-After: 1; "
        "500_after = the mutation took effect but the answer was lost)",
    )
    with deploy(run_dir, reliability_redis) as d:
        d.standin.configure(faults=faults, retry_after=1.0)
        plan = d.plan(INCIDENTS)
        started = time.monotonic()
        sent = d.sender().deliver(plan.webhooks, started + 600, rate=20.0)
        out, _ = d.wait(plan, completion_timeout(INCIDENTS, extra=120))
        took = time.monotonic() - started
        out = d.settle(plan)
        stats = d.standin.stats()
        bucket_throttled = stats["throttled"] - stats["faults"].get("throttled", 0)
        d.record(section, out, sent)
        section.add(
            **{
                "faults by kind": stats["faults"],
                "Admin API points spent": round(stats["points_spent"]),
                "points per incident": round(stats["points_spent"] / max(1, out.complete), 1),
                "calls per incident": round(stats["calls"] / max(1, out.complete), 2),
                "THROTTLED by the bucket (not injected)": bucket_throttled,
                "seconds until all complete": round(took, 1),
            }
        )
        section.add(**d.assert_logs_clean())
        assert sum(stats["faults"].values()) > 0
        assert_all_complete(out)
        assert out.duplicate_emails == 0
        assert bucket_throttled == 0, "the shared budget let the workers exceed the shop's bucket"


def test_expired_access_token_mid_run(run_dir: Path, reliability_redis: int) -> None:
    section = report.section(
        "Expired access token mid-run",
        f"{INCIDENTS} incidents; halfway through, the stand-in expires the shop's access token "
        "(Amends still believes it good for an hour): the next calls get 401",
    )
    with deploy(run_dir, reliability_redis) as d:
        plan = d.plan(INCIDENTS)
        first, second = plan.webhooks[: len(plan.webhooks) // 2], plan.webhooks[len(plan.webhooks) // 2 :]
        sender = d.sender()
        started = time.monotonic()
        sender.deliver(first, started + 600, rate=20.0)
        half = traffic.Plan(
            {o: k for o, k in plan.orders.items() if any(h.incident == o for h in first)}, first
        )
        d.wait(half, completion_timeout(len(first)))
        before = d.standin.stats()
        d.standin.expire_token(d.shop, ACCESS_TOKEN)
        sender.deliver(second, time.monotonic() + 600, rate=20.0)
        out, _ = d.wait(plan, completion_timeout(INCIDENTS))
        out = d.settle(plan)
        stats = d.standin.stats()
        with d.engine.connect() as db:
            reauth = db.execute(
                sa.text("SELECT reauth_reason FROM shops WHERE domain = :d"), {"d": d.shop}
            ).scalar()
        d.record(section, out, sender.stats)
        refreshes = stats["oauth_calls"] - before["oauth_calls"]
        section.add(
            **{
                "401 answers": stats["unauthorized"],
                "refresh grants sent": refreshes,
                "shop marked for re-authentication": bool(reauth),
            }
        )
        section.add(**d.assert_logs_clean())
        assert refreshes == 1
        assert stats["unauthorized"] >= 1  # the expiry was felt
        assert not reauth
        assert_all_complete(out)
        assert out.duplicate_emails == 0


HOSTILE_TEMPLATES = {
    "late_delivery": {
        "apology_html": (
            "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}"
            "{% endfor %}{% endfor %}{% endfor %}"
        )
    },
    "return": {"apology_text": "{{ (((10**64)**64)**64)**64 }}"},
    "refund": {"apology_subject": "{{ ''.__class__.__mro__[1].__subclasses__() }}"},
}


def test_hostile_templates_in_the_worker(run_dir: Path, reliability_redis: int) -> None:
    """Templates stored without the save-time check (written straight into the database):
    each apology stops with the template error on its incident, the worker keeps running, and
    the next incidents, with good templates, go through."""
    section = report.section(
        "Hostile merchant templates in the worker",
        "a template that loops for ever (late delivery), one computing a 10^16,000,000 integer (return) "
        "and one reaching for Python's classes (refund) stored straight into the shop's settings; three "
        "incidents; then the templates reset and three more incidents",
    )
    with deploy(run_dir, reliability_redis, workers=2) as d:
        with d.engine.begin() as db:
            shop_id = db.execute(
                sa.text("SELECT id FROM shops WHERE domain = :d"), {"d": d.shop}
            ).scalar_one()
            db.execute(
                sa.text("INSERT INTO shop_settings (shop_id, values, updated_at) VALUES (:s, :v, now())"),
                {"s": shop_id, "v": json.dumps(HOSTILE_TEMPLATES)},
            )
        hostile = d.plan(3)
        pids = {child.pid for child in d.stack.workers.children} if d.stack.workers else set()
        started = time.monotonic()
        d.sender().deliver(hostile.webhooks, started + 120)
        deadline = started + 180
        flagged: dict[int, str] = {}
        while time.monotonic() < deadline and len(flagged) < 3:
            with d.engine.connect() as db:
                flagged = dict(
                    db.execute(
                        sa.text(
                            "SELECT order_id, needs_attention FROM incidents "
                            "WHERE needs_attention IS NOT NULL"
                        )
                    ).all()
                )
            time.sleep(0.5)
        stopped_in = time.monotonic() - started
        with d.engine.begin() as db:
            db.execute(sa.text("DELETE FROM shop_settings WHERE shop_id = :s"), {"s": shop_id})
        after = traffic.plan_incidents(3, d.rng, first_order=traffic.FIRST_ORDER + 1000)
        d.sender().deliver(after.webhooks, time.monotonic() + 120)
        out, _ = d.wait(after, 180)
        alive = {child.pid for child in d.stack.workers.children} if d.stack.workers else set()
        section.add(
            **{
                "incidents stopped with the template error": len(flagged),
                "seconds until all three were stopped": round(stopped_in, 1),
                "worker restarts": d.stack.workers.restarts if d.stack.workers else 0,
                "incidents after the reset: complete": out.complete,
            }
        )
        section.add(**d.assert_logs_clean())
        assert sorted(flagged) == sorted(hostile.orders), flagged
        assert all("template" in why.lower() for why in flagged.values()), flagged
        assert d.stack.workers is not None and d.stack.workers.restarts == 0
        assert alive == pids, "a worker died on a template"
        assert out.complete == 3, out.examples()
        assert d.stack.smtp.tempfailed == 0
        assert len(d.stack.smtp.snapshot()) == 3  # only the three after the reset
