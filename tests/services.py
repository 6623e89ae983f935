"""Real services for the tests: a migrated database per run, a Redis database per run,
an SMTP server per test. Nothing here fakes anything of ours."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
import sqlalchemy as sa

from plugin import migrate

POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_BASE_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
    "--dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


def target_engine() -> str:
    """Which database the suite runs against: TEST_DATABASE=sqlite (default) or postgres."""
    return os.environ.get("TEST_DATABASE", "sqlite")


def service_missing(what: str, how: str) -> None:
    """In CI a missing service fails the run; on a newcomer's laptop it skips, saying how."""
    message = f"{what} is not reachable; start it with: {how}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def create_database(tmp_dir: str) -> tuple[str, Any]:
    """A fresh, migrated database for this test run; returns its URL and a drop function."""
    if target_engine() == "postgres":
        admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        name = f"amends_test_{uuid.uuid4().hex[:12]}"
        try:
            with admin.connect() as connection:
                connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        except sa.exc.OperationalError:
            service_missing("PostgreSQL at " + POSTGRES_ADMIN_URL, START_POSTGRES)
        url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name

        def drop() -> None:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    else:
        url = f"sqlite:///{tmp_dir}/amends-test.db"

        def drop() -> None:
            pass

    migrate.upgrade(url)
    return url, drop


def empty_tables(engine: sa.Engine) -> None:
    from plugin.db import Base

    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            connection.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(table.delete())


def claim_redis_db() -> tuple[str, Any]:
    """A Redis database number no other concurrent test run holds (1-15)."""
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    owner = uuid.uuid4().hex
    for number in range(1, 16):
        client = Redis.from_url(f"{REDIS_BASE_URL}/{number}")
        try:
            claimed = client.set("amends-test-owner", owner, nx=True, ex=4 * 3600)
        except RedisConnectionError:
            service_missing("Redis at " + REDIS_BASE_URL, START_REDIS)
        if claimed:
            return f"{REDIS_BASE_URL}/{number}", client
        client.close()
    pytest.fail("every Redis test database (1-15) is claimed by another run")


def flush_redis(client: Any) -> None:
    owner = client.get("amends-test-owner")
    client.flushdb()
    client.set("amends-test-owner", owner, ex=4 * 3600)


@dataclass
class SmtpServer:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it accepts.

    `fail_next(code, times)` makes the next deliveries answer an error, to test retries.
    """

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    _failures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def fail_next(self, reply: str, times: int = 1) -> None:
        with self._lock:
            self._failures.extend([reply] * times)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            if self._failures:
                return self._failures.pop(0)
            message = message_from_bytes(envelope.content, policy=policy.default)
            self.messages.append(message)  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.02)
        return list(self.messages)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_smtp_server() -> Iterator[SmtpServer]:
    from aiosmtpd.controller import Controller

    server = SmtpServer(port=free_port())
    controller = Controller(server, hostname="127.0.0.1", port=server.port)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


class HandOffs:
    """What the web handed to the workers, as (function, arguments, job id): on PostgreSQL the
    recorder's notifications (a LISTEN opened before the test records anything), elsewhere the
    Redis hand-off list."""

    def __init__(self, services: Any):
        self.services = services
        self.connection: Any = None
        self.notified: list[tuple[str, list[Any], str]] = []
        from plugin import listener

        if listener.notified(services):
            self.connection = services.db.dedicated_connection()
            self.connection.execute(f"LISTEN {listener.CHANNEL}")

    def items(self) -> list[tuple[str, list[Any], str]]:
        import json

        from plugin.listener import parse

        if self.connection is None:
            raw = self.services.redis.lrange(self.services.queue.handoff_key, 0, -1)
            return [tuple(json.loads(item)) for item in raw]  # type: ignore[misc]
        for notification in self.connection.notifies(timeout=0.5):
            self.notified.extend(parse(notification.payload))
        return list(self.notified)

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
