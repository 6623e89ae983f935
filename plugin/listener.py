"""The database's hand-off: on PostgreSQL, the statement that records deliveries also notifies
(webhooks/recorder.py), and one worker's listener turns each notification into RQ jobs.

The web then makes one round trip per batch of deliveries, to PostgreSQL, instead of one to
PostgreSQL and one to Redis. A notification is sent only when its transaction commits, so
it never names a row that is not there.

A notification reaches every listener, so one worker leads: the one holding a session-level
advisory lock, which PostgreSQL releases when its connection ends. The others try for the
lock every few seconds. Notifications sent while nobody listened (no worker running, a lead
changing hands) are not kept: a new leader first listens, then enqueues the catch-up job
(`CATCH_UP`), which enqueues every pending delivery whose job is not waiting. Anything that
still slips through is pending in the database, and the periodic sweep finds it.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from plugin.db import Database
from plugin.dispatcher import enqueue_jobs
from plugin.queue import RedisQueue

if TYPE_CHECKING:
    from plugin.services import Services

log = logging.getLogger(__name__)

CHANNEL = "amends_handoff"
# actions/sweep.py: every pending delivery whose job is not waiting, enqueued.
CATCH_UP = "actions.sweep.catch_up"
CATCH_UP_JOB = "catch-up-deliveries"
LEADER_LOCK = 0x616D656E6473  # any fixed bigint: "amends" in ASCII
KEEPALIVES = {"tcp_keepalives_idle": 15, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 3}
BLOCK_SECONDS = 1.0
LEAD_RETRY_SECONDS = 2.0
PAUSE_AFTER_ERROR_SECONDS = 1.0
# Held back while Redis is away, then enqueued; past this many the sweep finds the rest.
MAX_UNSENT = 50_000


def notified(services: Services) -> bool:
    """Whether the web hands deliveries off by notification: PostgreSQL, with workers on
    Redis (the embedded queue runs in the web's own process)."""
    return services.db.dialect == "postgresql" and services.queue.kind == "redis"


def enqueue_catch_up(queue: RedisQueue) -> None:
    queue.enqueue(CATCH_UP, job_id=CATCH_UP_JOB)


def parse(payload: str) -> list[tuple[str, list[Any], str]]:
    """A notification's `[function, job id prefix, [id, …]]` as (function, [id], job id)
    triples; [] for anything else."""
    try:
        func, prefix, ids = json.loads(payload)
    except (ValueError, TypeError):  # not JSON, or not three things
        return []
    if not (isinstance(func, str) and isinstance(prefix, str) and isinstance(ids, list)):
        return []
    return [(func, [i], f"{prefix}-{i}") for i in ids if isinstance(i, int)]


class Listener:
    """One worker's listening thread (a daemon; `stop()` ends it within a second)."""

    def __init__(self, queue: RedisQueue, db: Database):
        self.queue = queue
        self.db = db
        self.leading = threading.Event()
        self._stop = threading.Event()
        self._unsent: list[tuple[str, list[Any], str]] = []
        self._thread = threading.Thread(target=self._run, name="amends-listener", daemon=True)

    def start(self) -> Listener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * BLOCK_SECONDS + 1)

    def _run(self) -> None:
        failing: str | None = None
        while not self._stop.is_set():
            try:
                self._serve()
            except Exception as error:  # PostgreSQL or Redis away: try again quietly
                if failing != type(error).__name__:
                    failing = type(error).__name__
                    log.warning("listener paused: %s", failing)
                self._stop.wait(PAUSE_AFTER_ERROR_SECONDS)
            else:
                failing = None

    def _serve(self) -> None:
        connection = self.db.dedicated_connection()  # it lives as long as the lead
        try:
            # A leader whose host vanished (no FIN) would keep the lock for the server's TCP
            # default of hours; with these the server ends its session within ~30 s.
            for setting, value in KEEPALIVES.items():
                connection.execute(f"SET {setting} = {value:d}")
            while not self._lead(connection):
                if self._stop.wait(LEAD_RETRY_SECONDS):
                    return
            connection.execute(f"LISTEN {CHANNEL}")
            self.leading.set()
            log.info("listener leading: notifications on %r become jobs", CHANNEL)
            # Listening first, so a delivery committed from now on is notified, and one
            # committed before is pending for the catch-up to find.
            caught_up = False
            redis_failing: str | None = None
            while not self._stop.is_set():
                try:
                    if not caught_up:
                        enqueue_catch_up(self.queue)
                        caught_up = True
                    self._pass(connection)
                except RedisError as error:
                    # Redis away: keep the lead and what was notified, and try again.
                    if redis_failing != type(error).__name__:
                        redis_failing = type(error).__name__
                        log.warning("listener: %d jobs wait for Redis (%s)", len(self._unsent), redis_failing)
                    self._stop.wait(PAUSE_AFTER_ERROR_SECONDS)
                else:
                    if redis_failing:
                        log.info("listener: Redis is back")
                        redis_failing = None
        finally:
            self.leading.clear()
            connection.close()

    def _take(self, payload: str) -> None:
        jobs = parse(payload)
        if not jobs:
            # Not the recorder's: its deliveries, if any, are pending and the sweep finds them.
            log.error("notification dropped: not [function, job id prefix, [id, …]] (%d bytes)", len(payload))
        self._unsent.extend(jobs)

    @staticmethod
    def _lead(connection: Any) -> bool:
        row = connection.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()
        return bool(row and row[0])

    def _pass(self, connection: Any) -> None:
        """Wait up to BLOCK_SECONDS for a notification, take every other one already here,
        and enqueue their jobs in one pipeline."""
        for notification in connection.notifies(timeout=BLOCK_SECONDS, stop_after=1):
            self._take(notification.payload)
        if not self._unsent:
            return
        for notification in connection.notifies(timeout=0):
            self._take(notification.payload)
        try:
            enqueue_jobs(self.queue, self._unsent)
        except RedisError:
            if len(self._unsent) > MAX_UNSENT:  # their deliveries are pending: the sweep has them
                log.warning("listener: %d jobs left to the sweep", len(self._unsent) - MAX_UNSENT)
                del self._unsent[: len(self._unsent) - MAX_UNSENT]
            raise
        self._unsent.clear()
