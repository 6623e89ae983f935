"""Data protection: tokens never in clear in the database, no secret or personal data in
any process's logs, and the compliance webhooks erasing what they must.

The whole-run log scan also runs at the end of every fault scenario (`assert_logs_clean`).
"""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from plugin.db import Database
from tests.reliability import report
from tests.reliability.deployment import ACCESS_TOKEN, REFRESH_TOKEN, Deployment, artifacts_dir, deploy
from tests.reliability.traffic import Webhook

pytestmark = pytest.mark.slow


def test_database_errors_carry_no_personal_data(database_url: str) -> None:
    """A failing statement's message is what a job's traceback logs (RQ logs it whole):
    it must not echo the statement's parameters (customer emails, names, tokens)."""
    db = Database(database_url)
    email = f"leak-{uuid.uuid4().hex[:8]}@customer.example"
    try:
        with pytest.raises(sa.exc.IntegrityError) as caught, db.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO incidents (shop_id, kind, state, order_id, customer_email, details, "
                    "missing, opened_at, created_at, updated_at) VALUES (:shop, 'refund', 'detected', 1, "
                    ":email, '{}', '[]', now(), now(), now())"
                ),
                {"shop": 987_654_321, "email": email},  # no such shop: a foreign-key violation
            )
    finally:
        db.dispose()
    assert email not in str(caught.value)
    assert email not in repr(caught.value)


def _dump(engine: sa.Engine) -> dict[str, list[tuple[str, str, bytes]]]:
    """Every text, JSON and binary value of every table, as bytes: (table, column, value)."""
    inspector = sa.inspect(engine)
    found: dict[str, list[tuple[str, str, bytes]]] = {}
    with engine.connect() as db:
        for table in inspector.get_table_names():
            columns = [c["name"] for c in inspector.get_columns(table)]
            quoted = ", ".join(f'"{c}"::text' for c in columns)
            rows = db.execute(sa.text(f'SELECT {quoted} FROM "{table}"'))  # noqa: S608 - names from the schema
            values = found.setdefault(table, [])
            for row in rows:
                for column, value in zip(columns, row, strict=True):
                    if value is not None:
                        values.append((table, column, str(value).encode()))
    return found


def _search(dump: dict[str, list[tuple[str, str, bytes]]], needles: dict[str, str]) -> list[str]:
    hits = []
    for values in dump.values():
        for table, column, value in values:
            for name, needle in needles.items():
                if needle and needle.encode() in value:
                    hits.append(f"{name} in {table}.{column}")
    return sorted(set(hits))


def _token_forms(token: str) -> dict[str, str]:
    """A token, and the ways it could sit in a column without being "in clear" to a grep."""
    return {
        token[:12] + "…": token,
        token[:12] + "… (hex)": token.encode().hex(),
        token[:12] + "… (base64)": base64.b64encode(token.encode()).decode().rstrip("="),
    }


def _process(d: Deployment, hooks: list[Webhook], timeout: float = 120) -> None:
    """Deliver and wait until every delivery left 'pending'."""
    sender = d.sender()
    sender.deliver(hooks, time.monotonic() + timeout)
    assert not sender.stats.undelivered
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with d.engine.connect() as db:
            pending = db.execute(sa.text("SELECT count(*) FROM deliveries WHERE state = 'pending'")).scalar()
        if not pending:
            return
        time.sleep(0.5)
    raise AssertionError("deliveries still pending")


def _customer(d: Deployment, order_id: int) -> dict[str, Any]:
    """Give the stand-in's order a customer whose every detail is unique, to search for."""
    tag = uuid.uuid4().hex[:10]
    number = 7_900_000_000 + int(tag[:6], 16) % 1_000_000
    details = {
        "first": f"Zelphine{tag[:5]}",
        "last": f"Quorrabeck{tag[5:]}",
        "email": f"zelphine.{tag}@privacy.example",
        "id": str(number),
        "phone": f"+1613555{number % 10000:04d}",
    }
    d.set_customer(order_id, details["first"], details["last"], details["email"], number, details["phone"])
    return details


def test_tokens_encrypted_logs_clean_and_redaction_complete(
    request: pytest.FixtureRequest, reliability_redis: int
) -> None:
    section = report.section(
        "Data protection",
        "30 incidents through the whole pipeline, then customers/data_request and customers/redact for one "
        "customer, app/uninstalled and shop/redact for the shop; after each: a dump of every column of "
        "every table searched for tokens (clear, hex, base64), the customer's email, names, phone and id, "
        "the shop's domain; every process's log searched for tokens, secrets, HMACs and customer emails",
    )
    run_dir: Path = artifacts_dir(request.node.name)
    with deploy(run_dir, reliability_redis, workers=2) as d:
        plan = d.plan(30)
        late = sorted(o for o, kind in plan.orders.items() if kind == "late_delivery")
        target_order = late[0]
        customer = _customer(d, target_order)
        # Three more, whose data request and redact arrive at the same moment.
        racing = {order: _customer(d, order) for order in late[1:4]}
        _process(d, plan.webhooks)
        out, _ = d.wait(plan, 180)
        assert out.lost == 0, out.examples()

        # 1. Tokens: none in clear, in any column, in any encoding a grep would miss.
        dump = _dump(d.engine)
        tokens = {**_token_forms(ACCESS_TOKEN), **_token_forms(REFRESH_TOKEN)}
        assert _search(dump, tokens) == []
        with d.engine.connect() as db:
            stored = db.execute(
                sa.text("SELECT access_token FROM shops WHERE domain = :d"), {"d": d.shop}
            ).scalar()
        assert stored and d.services.cipher.decrypt(bytes(stored)) == ACCESS_TOKEN  # encrypted, not absent

        # 2. The customer is in the database before the redaction (so the search can find it).
        needles = _needles(customer)
        before = _search(dump, needles)
        assert any(hit.startswith("email") for hit in before), before

        shop_id = _shop_id(d)
        # A data request, then the redact, as Shopify sends them.
        _process(d, [Webhook("customers/data_request", _compliance(d, customer, target_order, request=True))])
        _process(d, [Webhook("customers/redact", _compliance(d, customer, target_order, request=False))])
        after_customer = _search(_dump(d.engine), needles)
        # Both at the same moment, for three customers: the export must not keep what the
        # redact erases (it did, before the two were serialised per shop).
        together = []
        for order, details in racing.items():
            together.append(Webhook("customers/data_request", _compliance(d, details, order, request=True)))
            together.append(Webhook("customers/redact", _compliance(d, details, order, request=False)))
        _process(d, together)
        # What only Amends' records held (the names) must be gone everywhere. The id, email and
        # phone may stay in one place: an export answering a request handled after the redact
        # names the customer it answers (from the request itself).
        after_racing = [
            hit
            for hit in _search(
                _dump(d.engine), {k: v for c in racing.values() for k, v in _needles(c).items()}
            )
            if " name of " in hit or not hit.split(" in ")[-1].startswith("data_exports.")
        ]
        section.add(
            **{
                "places holding the customer before customers/redact": len(before),
                "after customers/redact": after_customer or "none",
                "after a data request and a redact at once (3 customers)": after_racing or "none",
            }
        )
        assert after_customer == [], after_customer
        assert after_racing == [], after_racing

        # 3. The shop: uninstalled, then redacted 48 h later (here: at once).
        _process(d, [Webhook("app/uninstalled", {"id": 60_000_000_000, "domain": d.shop})])
        _process(d, [Webhook("shop/redact", {"shop_id": 60_000_000_000, "shop_domain": d.shop})])
        time.sleep(3)  # the shop row itself goes in a job after the redact's unit of work
        leftovers = _shop_leftovers(d, shop_id)
        section.add(**{"rows or values of the shop after shop/redact": leftovers or "none"})
        logs = d.assert_logs_clean((customer["email"],))
        section.add(**logs)
        assert leftovers == {}, leftovers


def _needles(customer: dict[str, Any]) -> dict[str, str]:
    return {
        f"email of {customer['first']}": customer["email"],
        f"first name of {customer['first']}": customer["first"],
        f"last name of {customer['first']}": customer["last"],
        f"phone of {customer['first']}": customer["phone"],
        f"customer id of {customer['first']}": customer["id"],
    }


def _compliance(d: Deployment, customer: dict[str, Any], order: int, request: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "shop_id": 60_000_000_000,
        "shop_domain": d.shop,
        "customer": {"id": int(customer["id"]), "email": customer["email"], "phone": customer["phone"]},
    }
    if request:
        payload.update(orders_requested=[order], data_request={"id": 9000 + order % 1000})
    else:
        payload["orders_to_redact"] = [order]
    return payload


def _shop_id(d: Deployment) -> int:
    with d.engine.connect() as db:
        return int(db.execute(sa.text("SELECT id FROM shops WHERE domain = :d"), {"d": d.shop}).scalar_one())


def _shop_leftovers(d: Deployment, shop_id: int) -> dict[str, int]:
    """Rows that still belong to the shop (by shop_id) or mention its domain anywhere."""
    inspector = sa.inspect(d.engine)
    leftovers: dict[str, int] = {}
    with d.engine.connect() as db:
        for table in inspector.get_table_names():
            if table == "alembic_version":
                continue
            columns = {c["name"] for c in inspector.get_columns(table)}
            if "shop_id" in columns:
                count = db.execute(
                    sa.text(f'SELECT count(*) FROM "{table}" WHERE shop_id = :s'),  # noqa: S608
                    {"s": shop_id},
                ).scalar()
                if count:
                    leftovers[f"{table} rows with its shop_id"] = count
            if table == "shops":
                count = db.execute(
                    sa.text("SELECT count(*) FROM shops WHERE id = :s"), {"s": shop_id}
                ).scalar()
                if count:
                    leftovers["the shops row"] = count
    for hit in _search(_dump(d.engine), {"domain": d.shop}):
        leftovers[hit] = leftovers.get(hit, 0) + 1
    return leftovers
