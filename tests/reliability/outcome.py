"""What a scenario ended with, read from the database, the SMTP server and the stand-in, and
judged against the plan: complete, duplicated or lost, per incident.

An incident is complete when its order has exactly one incident of the planned kind, one
apology message "sent" that the SMTP server accepted exactly once, one discount code created
in the shop exactly once, and its follow-up task. A resolved one also has its "fixed" notice,
once.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from tests.reliability.smtp import SmtpSink
from tests.reliability.traffic import Plan

APOLOGY = "apology"
FIXED = "fixed"


@dataclass
class Outcome:
    planned: int
    incidents: int = 0
    complete: int = 0
    incomplete: dict[int, str] = field(default_factory=dict)  # order id → what is missing
    duplicated: dict[int, str] = field(default_factory=dict)  # order id → what happened twice
    extra_incidents: int = 0  # more than one incident for one planned order and kind
    settled_early: int = 0  # resolved before any apology was due (disorder): counted complete
    apology_emails: int = 0
    duplicate_emails: int = 0  # accepted by the SMTP server more than once (same Message-ID)
    codes_created: int = 0  # discount mutations that created a code in the shop
    duplicate_codes: int = 0  # a second code created for one incident
    fixed_emails: int = 0
    tasks: int = 0
    delivery_attempts: Counter[int] = field(default_factory=Counter)  # attempts → deliveries
    deliveries: dict[str, int] = field(default_factory=dict)  # state → count
    message_attempts: int = 0  # SMTP attempts recorded on message rows
    needs_attention: dict[str, int] = field(default_factory=dict)  # reason → count

    @property
    def lost(self) -> int:
        return len(self.incomplete)

    def figures(self) -> dict[str, Any]:
        return {
            "incidents planned": self.planned,
            "incidents found": self.incidents,
            "complete": self.complete,
            "lost or incomplete": self.lost,
            "extra incidents": self.extra_incidents,
            "resolved before the apology (by design)": self.settled_early,
            "apology emails accepted": self.apology_emails,
            "duplicate emails": self.duplicate_emails,
            "codes created in the shop": self.codes_created,
            "duplicate codes": self.duplicate_codes,
            "'fixed' emails": self.fixed_emails,
            "tasks": self.tasks,
            "deliveries by state": self.deliveries,
            "deliveries processed more than once": sum(n for a, n in self.delivery_attempts.items() if a > 1),
            "SMTP attempts on message rows": self.message_attempts,
        }

    def examples(self, limit: int = 5) -> str:
        return "; ".join(f"order {o}: {why}" for o, why in list(self.incomplete.items())[:limit])


def collect(engine: sa.Engine, smtp: SmtpSink, standin: Any, shop: str, plan: Plan) -> Outcome:
    """Judge every planned incident. Reads only; safe to call repeatedly while waiting."""
    out = Outcome(planned=len(plan.orders))
    emails = Counter(r.message_id for r in smtp.snapshot())
    discount_log = standin.discounts(shop) if standin is not None else []
    created_codes = Counter(str(d.get("code", "")).upper() for d in discount_log)
    out.codes_created = sum(created_codes.values())

    with engine.connect() as db:
        shop_id = db.execute(sa.text("SELECT id FROM shops WHERE domain = :d"), {"d": shop}).scalar()
        incidents = db.execute(
            sa.text(
                "SELECT id, order_id, kind, state, resolved_at, needs_attention FROM incidents "
                "WHERE shop_id = :s ORDER BY id"
            ),
            {"s": shop_id},
        ).all()
        messages = db.execute(
            sa.text("SELECT incident_id, kind, state, message_id, attempts FROM messages WHERE shop_id = :s"),
            {"s": shop_id},
        ).all()
        codes = db.execute(
            sa.text("SELECT incident_id, code, state FROM discount_codes WHERE shop_id = :s"), {"s": shop_id}
        ).all()
        tasks = {
            row[0]
            for row in db.execute(sa.text("SELECT incident_id FROM tasks WHERE shop_id = :s"), {"s": shop_id})
        }
        for state, count in db.execute(sa.text("SELECT state, count(*) FROM deliveries GROUP BY state")):
            out.deliveries[state] = count
        for attempts, count in db.execute(
            sa.text("SELECT attempts, count(*) FROM deliveries GROUP BY attempts")
        ):
            out.delivery_attempts[attempts] = count

    by_order: dict[int, list[Any]] = defaultdict(list)
    for row in incidents:
        by_order[row.order_id].append(row)
        if row.needs_attention:
            reason = row.needs_attention.split(":")[0][:60]
            out.needs_attention[reason] = out.needs_attention.get(reason, 0) + 1
    messages_of: dict[int, list[Any]] = defaultdict(list)
    for row in messages:
        messages_of[row.incident_id].append(row)
        out.message_attempts += row.attempts or 0
    codes_of: dict[int, list[Any]] = defaultdict(list)
    for row in codes:
        codes_of[row.incident_id].append(row)
    out.tasks = len(tasks)
    out.incidents = sum(len(v) for v in by_order.values())

    for _mid, count in emails.items():
        if count > 1:
            out.duplicate_emails += count - 1

    for order_id, kind in plan.orders.items():
        found = [r for r in by_order.get(order_id, []) if r.kind == kind]
        if order_id in plan.resolved and _settled_early(found, messages_of, codes_of):
            # Disorder: the resolving signal was processed first (no incident at all) or
            # before the apology went out (the apology is skipped, rightly).
            out.settled_early += 1
            out.complete += 1
            continue
        if len(found) != 1:
            if len(found) > 1:
                out.extra_incidents += len(found) - 1
            out.incomplete[order_id] = f"{len(found)} {kind} incidents"
            continue
        incident = found[0]
        problems = []
        apologies = [m for m in messages_of[incident.id] if m.kind == APOLOGY]
        if len(apologies) != 1 or apologies[0].state != "sent":
            problems.append(f"apology rows {[(m.state) for m in apologies]}")
        else:
            accepted = emails.get(apologies[0].message_id, 0)
            out.apology_emails += min(accepted, 1)
            if accepted == 0:
                problems.append("apology not accepted by the SMTP server")
            elif accepted > 1:
                out.duplicated[order_id] = f"apology accepted {accepted} times"
        incident_codes = codes_of[incident.id]
        if len(incident_codes) != 1 or incident_codes[0].state != "created":
            problems.append(f"codes {[c.state for c in incident_codes]}")
        else:
            made = created_codes.get(incident_codes[0].code.upper(), 0)
            if made == 0:
                problems.append("code not created in the shop")
            if made > 1:
                out.duplicate_codes += made - 1
                out.duplicated[order_id] = f"code created {made} times"
        if incident.id not in tasks:
            problems.append("no task")
        if order_id in plan.resolved:
            fixed = [m for m in messages_of[incident.id] if m.kind == FIXED]
            if incident.resolved_at is None:
                problems.append("not resolved")
            elif len(fixed) != 1 or fixed[0].state != "sent" or emails.get(fixed[0].message_id, 0) == 0:
                problems.append(f"fixed notice {[(m.state, emails.get(m.message_id, 0)) for m in fixed]}")
            else:
                out.fixed_emails += 1
        if incident.needs_attention:
            problems.append(f"needs attention: {incident.needs_attention[:80]}")
        if problems:
            out.incomplete[order_id] = ", ".join(problems)
        else:
            out.complete += 1
    # Codes the shop holds that no incident row knows of are duplicates too.
    known = {c.code.upper() for c in codes}
    out.duplicate_codes += sum(n for code, n in created_codes.items() if code not in known)
    return out


def _settled_early(
    found: list[Any], messages_of: dict[int, list[Any]], codes_of: dict[int, list[Any]]
) -> bool:
    if not found:
        return True
    if len(found) != 1 or found[0].resolved_at is None:
        return False
    messages = messages_of[found[0].id]
    apologies = [m for m in messages if m.kind == APOLOGY]
    return (
        all(m.state == "skipped" for m in apologies)
        and not codes_of[found[0].id]
        and not any(m.kind == FIXED and m.state == "sent" for m in messages)
    )


def wait_for_completion(
    engine: sa.Engine, smtp: SmtpSink, standin: Any, shop: str, plan: Plan, timeout: float
) -> tuple[Outcome, float]:
    """Poll until every planned incident is complete (or `timeout`); the outcome and the
    seconds it took."""
    started = time.monotonic()
    outcome = collect(engine, smtp, standin, shop, plan)
    while outcome.complete < outcome.planned and time.monotonic() - started < timeout:
        time.sleep(1.0)
        outcome = collect(engine, smtp, standin, shop, plan)
    return outcome, time.monotonic() - started


CONSISTENCY_CHECKS = {
    "incidents without a timeline entry": (
        "SELECT count(*) FROM incidents i WHERE NOT EXISTS "
        "(SELECT 1 FROM timeline_entries t WHERE t.incident_id = i.id)"
    ),
    "incidents without the business key that opened them": (
        "SELECT count(*) FROM incidents i WHERE NOT EXISTS "
        "(SELECT 1 FROM incident_keys k WHERE k.incident_id = i.id)"
    ),
    "apologised incidents without a sent apology": (
        "SELECT count(*) FROM incidents i WHERE i.state = 'apologised' AND NOT EXISTS "
        "(SELECT 1 FROM messages m WHERE m.incident_id = i.id AND m.kind = 'apology' AND m.state = 'sent')"
    ),
    "messages 'sent' without a time": (
        "SELECT count(*) FROM messages WHERE state = 'sent' AND sent_at IS NULL"
    ),
    "codes 'created' without a Shopify id": (
        "SELECT count(*) FROM discount_codes WHERE state = 'created' AND shopify_id IS NULL"
    ),
    "deliveries still pending": "SELECT count(*) FROM deliveries WHERE state = 'pending'",
    "deliveries failed": "SELECT count(*) FROM deliveries WHERE state = 'failed'",
}


def consistency_problems(engine: sa.Engine) -> dict[str, int]:
    """Rows that a half-finished write would leave behind; {} when there are none."""
    problems = {}
    with engine.connect() as db:
        for name, query in CONSISTENCY_CHECKS.items():
            count = db.execute(sa.text(query)).scalar() or 0
            if count:
                problems[name] = count
    return problems
