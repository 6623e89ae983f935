"""Amends in production shape for the benchmarks, every part started here and stopped here.

- its own PostgreSQL database (created, migrated, dropped) and Redis database number,
- the Shopify stand-in as its own process (`python -m plugin.standin`),
- an SMTP server (aiosmtpd, in this process) that notes when it accepted each message,
- gunicorn serving `wsgi:create_app()` (or the baseline app) with AMENDS_ENV=production,
- RQ workers (`amends worker`).

Everything listens on 127.0.0.1 only. Processes run in their own process groups and are
ended by id; logs go to files under the run directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from typing import IO, Any

import requests
import sqlalchemy as sa

from plugin.config import PROJECT_ROOT

BIN = Path(sys.executable).parent
POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_BASE_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
# The same claim key the test suite uses, so a benchmark and a test run never share a number.
REDIS_CLAIM_KEY = "amends-test-owner"
API_KEY = "bench-api-key"
SHOP = "bench-shop.myshopify.com"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, grace: float = 10.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self.log.close()


@dataclass
class Received:
    at: float  # time.time() when the SMTP server accepted the message
    to: tuple[str, ...]
    raw: bytes

    def message(self) -> Any:
        return message_from_bytes(self.raw, policy=policy.default)


class SmtpSink:
    """aiosmtpd on 127.0.0.1 that keeps every message with the time it accepted it."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.port = free_port()
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.received.append(Received(time.time(), tuple(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 Message accepted for delivery"

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def clear(self) -> None:
        with self._lock:
            self.received.clear()

    def close(self) -> None:
        self._controller.stop()


@dataclass
class Stack:
    run_dir: Path
    standin_latency_ms: float = 0.0
    standin_plan: str = "standard"
    web_workers: int = 2
    log_level: str = "INFO"
    api_secret: str = field(default_factory=lambda: "bench-secret-" + secrets.token_hex(16))
    secret_key: str = field(default_factory=lambda: secrets.token_hex(32))
    children: list[Child] = field(default_factory=list)
    database_url: str = ""
    redis_url: str = ""
    standin_url: str = ""
    web_url: str = ""
    smtp: SmtpSink | None = None
    _db_name: str = ""
    _redis_owner: str = ""

    # -- life -----------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._create_database()
            self._claim_redis()
            self.smtp = SmtpSink()
            self._start_standin()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        if self.smtp is not None:
            self.smtp.close()
            self.smtp = None
        if self._redis_owner:
            client = self.redis()
            client.flushdb()
            client.close()
            self._redis_owner = ""
        if self._db_name:
            admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{self._db_name}" WITH (FORCE)'))
            admin.dispose()
            self._db_name = ""

    # -- storage --------------------------------------------------------------------------

    def _create_database(self) -> None:
        from plugin import migrate

        self._db_name = f"amends_bench_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(sa.text(f'CREATE DATABASE "{self._db_name}"'))
        except sa.exc.OperationalError as error:
            self._db_name = ""
            raise SystemExit(
                f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({type(error).__name__}); "
                "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
            ) from error
        finally:
            admin.dispose()
        self.database_url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + self._db_name
        migrate.upgrade(self.database_url)

    def _claim_redis(self) -> None:
        from redis import Redis
        from redis.exceptions import ConnectionError as RedisConnectionError

        owner = f"bench-{uuid.uuid4().hex}"
        for number in range(15, 0, -1):  # from the top: the test suite claims from the bottom
            client = Redis.from_url(f"{REDIS_BASE_URL}/{number}")
            try:
                claimed = client.set(REDIS_CLAIM_KEY, owner, nx=True, ex=4 * 3600)
            except RedisConnectionError as error:
                raise SystemExit(f"Redis is not reachable at {REDIS_BASE_URL}") from error
            finally:
                client.close()
            if claimed:
                self.redis_url = f"{REDIS_BASE_URL}/{number}"
                self._redis_owner = owner
                return
        raise SystemExit("every Redis database number 1-15 is claimed by a test or benchmark run")

    def redis(self) -> Any:
        from redis import Redis

        return Redis.from_url(self.redis_url)

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.database_url)

    def flush_queue(self) -> None:
        """Drop every queued job (keeps the database-number claim)."""
        client = self.redis()
        owner = client.get(REDIS_CLAIM_KEY)
        client.flushdb()
        if owner:
            client.set(REDIS_CLAIM_KEY, owner, ex=4 * 3600)
        client.close()

    # -- processes ------------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        log = open(self.run_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed by Child.stop
        popen = subprocess.Popen(
            argv,
            env=env or self.env(),
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child = Child(name, popen, log)
        self.children.append(child)
        return child

    def stop(self, child: Child) -> None:
        child.stop()
        self.children.remove(child)

    def _start_standin(self) -> None:
        port_file = self.run_dir / "standin.port"
        port_file.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "plugin.standin",
            "--port-file",
            str(port_file),
            "--latency-ms",
            str(self.standin_latency_ms),
            "--plan",
            self.standin_plan,
        ]
        self.spawn("standin", argv, env=_clean_env())
        if not wait_until(lambda: port_file.exists() and port_file.read_text().strip() != "", 20):
            raise RuntimeError("the Shopify stand-in did not start:\n" + self.tail("standin"))
        self.standin_url = f"http://127.0.0.1:{port_file.read_text().strip()}"

    def env(self) -> dict[str, str]:
        env = _clean_env()
        env.update(
            AMENDS_ENV="production",
            SHOPIFY_API_KEY=API_KEY,
            SHOPIFY_API_SECRET=self.api_secret,
            SHOPIFY_APP_URL=self.web_url or "http://127.0.0.1:8000",
            SHOPIFY_ADMIN_BASE_URL=self.standin_url + "/shops/{shop}",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            SMTP_URL=self.smtp.url if self.smtp else "smtp://127.0.0.1:25",
            MAIL_FROM="Amends <amends@bench.example.com>",
            SECRET_KEY=self.secret_key,
            LOG_LEVEL=self.log_level,
        )
        return env

    def config(self) -> Any:
        from plugin.config import Config

        return Config.from_env(self.env())

    def start_web(self, app: str = "wsgi:create_app()", name: str = "web") -> Child:
        """gunicorn: `web_workers` processes, gunicorn.conf.py, as the Procfile runs it (no access log)."""
        port = free_port()
        self.web_url = f"http://127.0.0.1:{port}"
        argv = [
            str(BIN / "gunicorn"),
            "--workers",
            str(self.web_workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--no-control-socket",
            "--graceful-timeout",
            "5",
            app,
        ]
        child = self.spawn(name, argv)
        url = self.web_url

        def healthy() -> bool:
            try:
                return requests.get(url + "/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        if not wait_until(healthy, 60, 0.2):
            raise RuntimeError(f"gunicorn ({app}) did not become healthy:\n" + self.tail(name))
        return child

    def start_workers(self, count: int) -> list[Child]:
        return [self.spawn(f"worker-{i}", [str(BIN / "amends"), "worker"]) for i in range(count)]

    def wait_for_workers(self, count: int, timeout: float = 120) -> None:
        """Until `count` RQ workers have registered in Redis (they are ready for jobs)."""
        from rq import Worker

        redis = self.redis()
        try:
            if not wait_until(lambda: Worker.count(connection=redis) >= count, timeout, 0.2):
                raise RuntimeError(f"RQ workers did not start:\n{self.tail('worker-0')}")
        finally:
            redis.close()

    def worker_pids(self) -> dict[str, int]:
        return {c.name: c.pid for c in self.children if c.name.startswith("worker-")}

    def gunicorn_worker_pids(self, child: Child) -> list[int]:
        """The worker processes under a gunicorn master."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == child.pid:
                    found.append(int(entry.name))
        return sorted(found)

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.run_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # -- the stand-in ---------------------------------------------------------------------

    def standin(self, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.standin_url + path
        response = (
            requests.post(url, json=body, timeout=10) if body is not None else requests.get(url, timeout=10)
        )
        response.raise_for_status()
        return response.json()

    # -- the shop -------------------------------------------------------------------------

    def install_shop(self, domain: str = SHOP, settings: dict[str, Any] | None = None) -> None:
        """An installed shop with a non-expiring stand-in token, out of test mode."""
        from sqlalchemy import select

        from plugin import services as services_module
        from plugin.db import utcnow
        from plugin.models import Shop

        services = services_module.build(self.config())
        try:
            with services.db.session() as session:
                shop = session.scalar(select(Shop).where(Shop.domain == domain))
                if shop is None:
                    shop = Shop(
                        domain=domain,
                        name="Bench Outfitters",
                        email="owner@bench.example.com",
                        currency="USD",
                        scopes=",".join(services.config.scopes),
                        test_mode=False,
                    )
                    session.add(shop)
                shop.installed_at = utcnow()
                shop.access_token = services.cipher.encrypt("shpat_bench_token")
                session.flush()
                if settings:
                    from plugin import settings as merchant_settings

                    merchant_settings.save(session, shop.id, settings)
        finally:
            services.close()


def _clean_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AMENDS_", "SHOPIFY_", "DATABASE_", "REDIS_", "SMTP_", "TEST_", "MAIL_"))
    }
    env.update(PYTHONUNBUFFERED="1", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return env


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM: the most resident memory the process ever had."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str))
