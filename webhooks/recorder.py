"""Recording deliveries with group commit: one INSERT and one commit for every delivery that
arrived while the previous commit was in flight.

A commit costs a round trip and a WAL flush, whatever it holds; under load, a web process's
threads (gunicorn.conf.py) would otherwise queue one commit each. Here the first request
thread to find no write in flight leads: it takes every row waiting (its own included),
inserts them in one statement that skips known webhook ids, and wakes each thread whose row
it wrote, then the next waiting thread to lead. Each thread sleeps on its own lock, so it is
woken once, for its answer or its turn (a shared condition woke them all, most to sleep
again, at ~30 µs of CPU a wake on this machine). A request is answered only after the commit
that holds its row, so nothing acknowledged is lost.

The new rows reach the workers with that same commit: on PostgreSQL with a Redis queue the
statement itself notifies the workers' listener (plugin/listener.py), which turns the
notification into RQ jobs; elsewhere they are handed to the queue in one call. The Redis
round trip was a third of the receiver's CPU on a delivery that creates work.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError

from actions.deliveries import DELIVERY_JOB, PROCESS_DELIVERY
from plugin import listener
from plugin.db import utcnow
from plugin.models import Delivery
from plugin.models.delivery import PENDING
from plugin.services import Services

# Commits in flight at once per process. Two (tried in B1) split the batches in half and
# bought no throughput: the CPU, not the commit's wait, is what runs out.
WRITERS = 1
MAX_BATCH = 200  # a notification's ids stay far under PostgreSQL's 8,000-byte payload

_DELIVERIES = cast(Table, Delivery.__table__)

# On PostgreSQL the rows go to the driver's cursor directly: SQLAlchemy's execution around the
# same INSERT took ~70 of its ~200 µs of CPU per call inside the web process. The statement
# fills what SQLAlchemy's insert would: the row values, received_at and attempts.
_COLUMNS = (
    "webhook_id",
    "topic",
    "shop_domain",
    "event_id",
    "api_version",
    "triggered_at",
    "payload",
    "state",
    "reason",
)
_PG_INSERT = (
    "INSERT INTO deliveries (webhook_id, topic, shop_domain, event_id, api_version, triggered_at, payload,"
    " state, reason, received_at, attempts) VALUES "
)
_PG_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 0)"
_PG_ON_CONFLICT = " ON CONFLICT (webhook_id) DO NOTHING RETURNING id, webhook_id"
# The same INSERT, telling the dispatcher which new rows need a job (at commit, so never a row
# that is not there). Ignored rows need none, and a batch of only those notifies nothing.
_PG_NOTIFY_BEFORE = "WITH new AS ("
_PG_NOTIFY_AFTER = (
    " ON CONFLICT (webhook_id) DO NOTHING RETURNING id, webhook_id, state),"
    " handed AS (SELECT pg_notify(%s, json_build_array(%s::text, %s::text, json_agg(id))::text)"
    " FROM new WHERE state = %s HAVING count(*) > 0)"
    " SELECT id, webhook_id FROM new LEFT JOIN handed ON true"
)


@dataclass
class _Row:
    values: Mapping[str, Any]
    done: bool = False
    delivery_id: int | None = None  # None once done: a webhook id already recorded
    error: Exception | None = None
    handed_off: bool = False
    batch: list[_Row] | None = None  # set when this row's thread is to write these rows
    wake: Any = field(default_factory=lambda: _acquired())


def _acquired() -> Any:
    lock = threading.Lock()
    lock.acquire()
    return lock


class Recorder:
    def __init__(self, services: Services):
        self.services = services
        self._lock = threading.Lock()
        self._waiting: list[_Row] = []
        self._writers = 0
        self._postgresql = services.db.dialect == "postgresql"
        self._notify = listener.notified(services)
        self._insert = (
            sqlite.insert(_DELIVERIES)
            .on_conflict_do_nothing(index_elements=["webhook_id"])
            .returning(_DELIVERIES.c.id, _DELIVERIES.c.webhook_id)
        )

    def record(self, values: Mapping[str, Any]) -> tuple[int | None, bool]:
        """Commit one delivery row. Returns (its id, or None when its webhook id was already
        recorded; whether it was handed off to the workers). Raises the database's error
        when the row could not be committed."""
        row = _Row(values)
        with self._lock:
            self._waiting.append(row)
            if self._writers < WRITERS:
                self._writers += 1
                row.batch = self._take()
        while not row.done:
            if row.batch is None:
                row.wake.acquire()  # released once: the row is written, or a batch is ours to write
            else:
                self._write_batch(row)
        if row.error is not None:
            raise row.error
        return row.delivery_id, row.handed_off

    def _take(self) -> list[_Row]:
        batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
        return batch

    def _write_batch(self, own: _Row) -> None:
        batch, own.batch = own.batch or [], None
        completed = False
        try:
            self._write(batch)
            completed = True
        finally:
            for written in batch:
                if not completed and written.error is None:
                    written.error = RuntimeError("the write was interrupted")
                written.done = True
            with self._lock:
                # What arrived meanwhile goes to the thread of its oldest row: this writer's
                # turn passes on, so no thread writes for others longer than one batch.
                successor = None
                if self._waiting:
                    successor = self._waiting[0]
                    successor.batch = self._take()
                else:
                    self._writers -= 1
            for written in batch:
                if written is not own:
                    written.wake.release()
            if successor is not None and successor is not own:
                successor.wake.release()

    def _write(self, batch: list[_Row]) -> None:
        try:
            inserted = self._insert_rows([dict(row.values) for row in batch])
        except Exception as error:
            for row in batch:
                row.error = error
            return
        # Within one statement a repeated webhook id is inserted once: the first row has it.
        for row in batch:
            row.delivery_id = inserted.pop(row.values["webhook_id"], None)
        fresh = [row for row in batch if row.delivery_id is not None and row.values["state"] == PENDING]
        if not fresh:
            return
        if self._notify:
            for row in fresh:
                row.handed_off = True  # by the commit's notification
            return
        try:
            self.services.queue.hand_off_many(
                [(PROCESS_DELIVERY, (row.delivery_id,), f"{DELIVERY_JOB}-{row.delivery_id}") for row in fresh]
            )
        except Exception:
            return  # recorded, so still acknowledged: the sweep enqueues them (the view logs it)
        for row in fresh:
            row.handed_off = True

    def _insert_rows(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        insert_once = self._insert_postgresql if self._postgresql else self._insert_sqlite
        try:
            return insert_once(rows)
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
            # A pooled connection found dead (the database restarted): the pool is renewed,
            # try once more. Rows the first try committed are skipped as known.
            return insert_once(rows)

    def _insert_sqlite(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        with self.services.db.autocommit.connect() as connection:
            result = connection.execute(self._insert, rows)
            return {webhook_id: delivery_id for delivery_id, webhook_id in result}

    def _insert_postgresql(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        now = utcnow()
        values = ", ".join([_PG_ROW] * len(rows))
        params = [value for row in rows for value in (*(row[column] for column in _COLUMNS), now)]
        if self._notify:
            statement = _PG_NOTIFY_BEFORE + _PG_INSERT + values + _PG_NOTIFY_AFTER
            params += [listener.CHANNEL, PROCESS_DELIVERY, DELIVERY_JOB, PENDING]
        else:
            statement = _PG_INSERT + values + _PG_ON_CONFLICT
        engine = self.services.db.autocommit
        connection = None
        try:
            connection = engine.raw_connection()  # from the pool; back to it on close()
            cursor = connection.cursor()
            cursor.execute(statement, params)
            return {webhook_id: delivery_id for delivery_id, webhook_id in cursor.fetchall()}
        except engine.dialect.loaded_dbapi.Error as error:
            # What SQLAlchemy's own execution does: drop a pooled connection found dead and
            # raise SQLAlchemy's error class (the view answers 503 to it).
            dead = connection is not None and engine.dialect.is_disconnect(
                error, connection.dbapi_connection, None
            )
            if connection is not None and dead:
                connection.invalidate(error)
            raise DBAPIError.instance(
                statement,
                None,
                error,
                engine.dialect.loaded_dbapi.Error,
                hide_parameters=True,
                connection_invalidated=dead,
                dialect=engine.dialect,
            ) from error
        finally:
            if connection is not None:
                connection.close()
