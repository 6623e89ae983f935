"""Group commit in the receiver: rows that arrive while a commit is in flight share the next
one, each request still learns its own outcome, and a failed commit fails every row in it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from plugin.db import utcnow
from plugin.models import Delivery
from plugin.services import Services
from tests import services as real
from tests.conftest import make_config
from webhooks.recorder import Recorder
from wsgi import create_app


def row(webhook_id: str, state: str = "pending") -> dict[str, Any]:
    return {
        "webhook_id": webhook_id,
        "topic": "fulfillment_events/create",
        "shop_domain": "shop.myshopify.com",
        "event_id": None,
        "api_version": "2026-07",
        "triggered_at": None,
        "payload": "{}" if state == "pending" else None,
        "state": state,
        "reason": None if state == "pending" else "not handled",
    }


@pytest.fixture
def quiet(database_url: str, redis_url: str) -> Iterator[tuple[Services, Recorder]]:
    """Services whose queue is Redis with no worker: the rows a test reads are as the recorder
    wrote them (a job would update them, and on PostgreSQL give them a new xmin)."""
    app = create_app(make_config(database_url, redis_url=redis_url))
    services = app.extensions["amends"]
    real.empty_tables(services.db.engine)
    yield services, app.extensions["amends.recorder"]
    services.close()


def statements(engine: sa.Engine) -> list[int]:
    """SQLite: counts INSERTs on `engine` (rows per statement) as SQLite receives them."""
    seen: list[int] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO deliveries"):
            seen.append(statement.count("(?") or 1)

    return seen


def rows_per_transaction(services) -> list[int]:
    """PostgreSQL: the deliveries each transaction wrote (rows of one commit share an xmin),
    in the order they were written."""
    with services.db.engine.connect() as connection:
        query = sa.text("SELECT count(*) FROM deliveries GROUP BY xmin::text ORDER BY min(id)")
        return [int(n) for n in connection.execute(query).scalars()]


def hold_write_lock(services) -> tuple[threading.Event, threading.Thread]:
    """A transaction in another connection that blocks writes to deliveries until released."""
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        engine = sa.create_engine(services.db.url)
        try:
            with engine.connect() as connection:
                if services.db.dialect == "postgresql":
                    connection.execute(sa.text("LOCK TABLE deliveries IN EXCLUSIVE MODE"))
                else:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                locked.set()
                release.wait(30)
                connection.rollback()
        finally:
            engine.dispose()

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(10)
    return release, thread


def test_rows_that_wait_for_a_commit_share_the_next_one(quiet):
    services, recorder = quiet
    inserts = statements(services.db.autocommit)
    handoffs = real.HandOffs(services)
    release, holder = hold_write_lock(services)
    results: dict[str, tuple[int | None, bool]] = {}
    ids = [f"w-{n}" for n in range(12)] + ["w-3"]  # one webhook id sent twice at once

    def send(webhook_id: str) -> None:
        results.setdefault(webhook_id, recorder.record(row(webhook_id)))

    first = threading.Thread(target=send, args=(ids[0],))
    first.start()
    deadline = time.monotonic() + 10  # the first row's INSERT is now blocked by the lock
    while not recorder._writers and time.monotonic() < deadline:
        time.sleep(0.01)
    outcomes: list[tuple[str, tuple[int | None, bool]]] = []
    lock = threading.Lock()

    def send_and_note(webhook_id: str) -> None:
        outcome = recorder.record(row(webhook_id))
        with lock:
            outcomes.append((webhook_id, outcome))

    others = [threading.Thread(target=send_and_note, args=(w,)) for w in ids[1:]]
    for thread in others:
        thread.start()
    while len(recorder._waiting) < len(others) and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for thread in [first, *others, holder]:
        thread.join(30)

    with services.db.session() as session:
        stored = dict(session.execute(sa.select(Delivery.webhook_id, Delivery.id)).all())
    # Every row committed once; each request got its own id back and was handed off; the
    # second "w-3" learned it was a duplicate.
    assert sorted(stored) == sorted(set(ids))
    got = [results[ids[0]], *(outcome for _, outcome in outcomes)]
    assert sorted(i for i, _ in got if i is not None) == sorted(stored.values())
    assert [o for w, o in outcomes if w == "w-3"].count((None, False)) == 1
    assert all(handed for i, handed in got if i is not None)
    # Two statements: the first row alone, then the twelve that waited for it (eleven new).
    if services.db.dialect == "postgresql":
        assert rows_per_transaction(services) == [1, 11]
    else:
        assert inserts == [1, 12]
    # One job per new row, handed off by the commits (in one notification each on PostgreSQL).
    handed = sorted(job_id for _, _, job_id in handoffs.items())
    assert handed == sorted(f"delivery-{i}" for i in stored.values())
    handoffs.close()


def test_a_failed_commit_fails_every_row_in_it_and_records_nothing(database_url, services):
    down = create_app(make_config(f"postgresql+psycopg://postgres@127.0.0.1:{real.free_port()}/x"))
    broken = down.extensions["amends.recorder"]
    errors: list[BaseException] = []

    def send(n: int) -> None:
        try:
            broken.record(row(f"x-{n}"))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    down.extensions["amends"].close()
    assert len(errors) == 6
    assert all(isinstance(e, sa.exc.OperationalError) for e in errors), [repr(e) for e in errors]


def test_an_ignored_topic_is_recorded_but_not_handed_off(database_url, redis_url):
    app = create_app(make_config(database_url, redis_url=redis_url))
    services = app.extensions["amends"]
    real.empty_tables(services.db.engine)
    handoffs = real.HandOffs(services)
    try:
        recorder = app.extensions["amends.recorder"]
        delivery_id, handed_off = recorder.record(row(f"i-{uuid.uuid4()}", state="ignored"))
        assert delivery_id is not None and handed_off is False
        assert handoffs.items() == []
        delivery_id, handed_off = recorder.record(row(f"p-{uuid.uuid4()}"))
        assert handed_off is True
        job = ("actions.deliveries.process_delivery", [delivery_id], f"delivery-{delivery_id}")
        assert handoffs.items() == [job]
    finally:
        handoffs.close()
        services.close()


def test_a_recorded_row_holds_what_the_model_would_fill(quiet):
    """PostgreSQL's INSERT is written for the driver: it must fill the row as the model does."""
    services, recorder = quiet
    before = utcnow()
    values = {**row("filled"), "event_id": "evt-1", "triggered_at": before - timedelta(seconds=5)}
    ignored = {**row("skipped", state="ignored")}
    delivery_id, _ = recorder.record(values)
    recorder.record(ignored)
    with services.db.session() as session:
        stored = session.get(Delivery, delivery_id)
        skipped = session.scalar(sa.select(Delivery).where(Delivery.webhook_id == "skipped"))
        assert stored is not None and skipped is not None
        assert (stored.topic, stored.shop_domain, stored.event_id, stored.api_version) == (
            "fulfillment_events/create",
            "shop.myshopify.com",
            "evt-1",
            "2026-07",
        )
        assert stored.triggered_at == values["triggered_at"]
        assert before <= stored.received_at <= utcnow()
        assert (stored.state, stored.reason, stored.payload) == ("pending", None, "{}")
        assert (stored.attempts, stored.shop_id, stored.processed_at) == (0, None, None)
        assert before <= skipped.received_at <= utcnow()
        assert (skipped.state, skipped.reason, skipped.payload) == ("ignored", "not handled", None)
        assert (skipped.attempts, skipped.shop_id, skipped.processed_at) == (0, None, None)
