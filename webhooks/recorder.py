"""Recording deliveries with group commit: one INSERT and one commit for every delivery that
arrived while the previous commit was in flight.

A commit costs a round trip and a WAL flush, whatever it holds; under load, a web process's
threads (gunicorn.conf.py) would otherwise queue one commit each. Here the first request
thread to find no write in flight becomes the writer: it takes every row waiting (its own
included), inserts them in one statement that skips known webhook ids, hands the new ones off
to the workers in one round trip, and wakes the others. A request is answered only after the
commit that holds its row, so nothing acknowledged is lost. Without concurrency (one request
at a time) this is one INSERT per delivery, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError

from actions.deliveries import PROCESS_DELIVERY
from plugin.db import utcnow
from plugin.models import Delivery
from plugin.models.delivery import PENDING
from plugin.services import Services

MAX_BATCH = 200

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


@dataclass
class _Row:
    values: Mapping[str, Any]
    done: bool = False
    delivery_id: int | None = None  # None once done: a webhook id already recorded
    error: Exception | None = None
    handed_off: bool = False


class Recorder:
    def __init__(self, services: Services):
        self.services = services
        self._changed = threading.Condition()
        self._waiting: list[_Row] = []
        self._writing = False
        self._postgresql = services.db.dialect == "postgresql"
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
        with self._changed:
            self._waiting.append(row)
        while True:
            with self._changed:
                while self._writing and not row.done:
                    self._changed.wait()
                if row.done:
                    break
                self._writing = True
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            completed = False
            try:
                self._write(batch)
                completed = True
            finally:
                with self._changed:
                    for written in batch:
                        if not completed and written.error is None:
                            written.error = RuntimeError("the write was interrupted")
                        written.done = True
                    self._writing = False
                    self._changed.notify_all()
        if row.error is not None:
            raise row.error
        return row.delivery_id, row.handed_off

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
        try:
            self.services.queue.hand_off_many(
                [(PROCESS_DELIVERY, (row.delivery_id,), f"delivery-{row.delivery_id}") for row in fresh]
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
        statement = _PG_INSERT + ", ".join([_PG_ROW] * len(rows)) + _PG_ON_CONFLICT
        params = [value for row in rows for value in (*(row[column] for column in _COLUMNS), now)]
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
