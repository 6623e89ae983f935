"""Amends in production shape, as real processes, with switches to break things.

`Stack` starts gunicorn serving `wsgi:create_app()` (AMENDS_ENV=production) and N RQ workers
(`amends worker`) that a supervisor restarts when they die, against this run's own
PostgreSQL database and Redis database number, each reached through a `TcpProxy` the test
can cut. Mail goes to an `SmtpSink` the test can make fail; Shopify is the local stand-in.

Every process's output goes to a file under the run directory (the data-protection checks
read them all). Every wait is bounded, and `close()` ends every process, even after a
failure.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import requests
import sqlalchemy as sa

from plugin.config import PROJECT_ROOT
from tests.reliability.proxy import TcpProxy
from tests.reliability.smtp import SmtpSink
from tests.services import POSTGRES_ADMIN_URL, REDIS_BASE_URL, free_port

BIN = Path(sys.executable).parent
API_KEY = "reliability-api-key"
SHOP_DOMAIN = "steady-shop.myshopify.com"


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# Every process started and not yet stopped, so that a run that is itself killed (SIGTERM
# from a timeout, Ctrl-C) still ends them: see `kill_all` and the conftest.
LIVE: set[Child] = set()


def kill_all() -> None:
    for child in list(LIVE):
        child.kill(signal.SIGKILL)
        LIVE.discard(child)


@dataclass(eq=False)
class Child:
    """One process we started, in its own process group, with its output in a file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    _log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log.write(f"\n--- {time.strftime('%H:%M:%S')} starting {self.name}\n".encode())
        self._log.flush()
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=PROJECT_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: a kill reaches its children too
        )
        LIVE.add(self)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def stop(self, grace: float = 10.0) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.popen.wait(5)
        # Whatever it left behind in its group goes too.
        self.kill(signal.SIGKILL)
        LIVE.discard(self)
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class WorkerPool:
    """N `amends worker` processes; a supervisor thread starts a new one when one dies."""

    size: int
    make: Callable[[int], Child]
    children: list[Child] = field(default_factory=list)
    started: int = 0
    killed: int = 0
    restarts: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            for _ in range(self.size):
                self._spawn()
        self._thread = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        child = self.make(self.started)
        self.started += 1
        child.start()
        child.started_at = time.monotonic()
        self.children.append(child)

    def _supervise(self) -> None:
        # Like systemd's RestartSec: a worker that dies soon after starting (its Redis is
        # down, say) is restarted after a growing pause, not in a tight loop.
        due: list[float] = []
        quick_deaths = 0
        while not self._stop.wait(0.2):
            with self._lock:
                now = time.monotonic()
                for child in list(self.children):
                    if not child.alive():
                        child.stop(grace=0)
                        self.children.remove(child)
                        quick = now - child.started_at < 5
                        quick_deaths = quick_deaths + 1 if quick else 0
                        due.append(now + (min(5.0, 0.25 * 2**quick_deaths) if quick else 0))
                for when in sorted(due):
                    if when <= now and not self._stop.is_set():
                        due.remove(when)
                        self.restarts += 1
                        self._spawn()

    def kill_one(self, rng: random.Random) -> int | None:
        """SIGKILL a random live worker (its whole process group); the supervisor restarts it."""
        with self._lock:
            live = [c for c in self.children if c.alive()]
            if not live:
                return None
            victim = rng.choice(live)
            victim.kill(signal.SIGKILL)
            self.killed += 1
            return victim.pid

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            for child in self.children:
                child.stop(grace=10)
            self.children.clear()


class Stack:
    """One Amends deployment for one scenario. Use as a context manager."""

    def __init__(
        self,
        run_dir: Path,
        redis_db: int,
        web_workers: int = 2,
        rq_workers: int = 2,
        shopify_base: str | None = None,
        extra_env: dict[str, str] | None = None,
    ):
        self.run_dir = run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.redis_db = redis_db
        self.web_workers = web_workers
        self.rq_worker_count = rq_workers
        self.shopify_base = shopify_base
        self.extra_env = extra_env or {}
        # Fresh secrets per run, so the log and dump scans know exactly what to look for.
        self.api_secret = "shpss_" + secrets.token_hex(16)
        self.secret_key = secrets.token_urlsafe(48)
        self.database_name = f"amends_rel_{uuid.uuid4().hex[:10]}"
        self.web_port = free_port()
        self.children: list[Child] = []
        self.workers: WorkerPool | None = None
        self.pg_proxy: TcpProxy | None = None
        self.redis_proxy: TcpProxy | None = None
        self.smtp = SmtpSink()
        self._admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        self._database_created = False

    # ----- set-up and tear-down

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        with self._admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{self.database_name}"'))
        self._database_created = True
        pg = urlsplit(POSTGRES_ADMIN_URL)
        redis = urlsplit(REDIS_BASE_URL)
        self.pg_proxy = TcpProxy("postgres", pg.hostname or "127.0.0.1", pg.port or 5432)
        self.redis_proxy = TcpProxy("redis", redis.hostname or "127.0.0.1", redis.port or 6379)
        self.run("migrate", [str(BIN / "amends"), "migrate"], timeout=120)
        self.start_web()
        self.workers = WorkerPool(self.rq_worker_count, self._make_worker)
        self.workers.start()

    def close(self) -> None:
        if self.workers is not None:
            self.workers.close()
        for child in self.children:
            child.stop()
        self.smtp.close()
        for proxy in (self.pg_proxy, self.redis_proxy):
            if proxy is not None:
                proxy.close()
        if self._database_created:
            with self._admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)'))
            self._database_created = False
        self._admin.dispose()

    # ----- configuration

    @property
    def database_url(self) -> str:
        """Through the proxy: what Amends' processes use."""
        assert self.pg_proxy is not None
        pg = urlsplit(POSTGRES_ADMIN_URL)
        return f"postgresql://{pg.username}@127.0.0.1:{self.pg_proxy.port}/{self.database_name}"

    @property
    def direct_database_url(self) -> str:
        """Straight to PostgreSQL: what the test uses to look, even during an outage."""
        return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + self.database_name

    @property
    def redis_url(self) -> str:
        assert self.redis_proxy is not None
        return f"redis://127.0.0.1:{self.redis_proxy.port}/{self.redis_db}"

    @property
    def direct_redis_url(self) -> str:
        return f"{REDIS_BASE_URL}/{self.redis_db}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AMENDS_", "SHOPIFY_", "DATABASE_", "REDIS_", "SMTP_", "TEST_"))
        }
        env.update(
            AMENDS_ENV="production",
            SHOPIFY_API_KEY=API_KEY,
            SHOPIFY_API_SECRET=self.api_secret,
            SHOPIFY_APP_URL=self.base_url,
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            SMTP_URL=self.smtp.url,
            MAIL_FROM="Amends <amends@reliability.test>",
            SECRET_KEY=self.secret_key,
            LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        if self.shopify_base:
            env["SHOPIFY_ADMIN_BASE_URL"] = self.shopify_base
        env.update(self.extra_env)
        return env

    def config(self) -> Any:
        """The same configuration, for building services in the test process (direct URLs)."""
        from plugin.config import Config

        environ = self.env()
        environ["DATABASE_URL"] = self.direct_database_url
        environ["REDIS_URL"] = self.direct_redis_url
        return Config.from_env(environ)

    # ----- processes

    def run(self, name: str, argv: list[str], timeout: float) -> None:
        log_path = self.run_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            result = subprocess.run(
                argv, env=self.env(), cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=timeout
            )
        if result.returncode != 0:
            raise RuntimeError(f"{name} failed ({result.returncode}):\n{log_path.read_text()[-3000:]}")

    def start_web(self) -> None:
        child = Child(
            "web",
            [
                str(BIN / "gunicorn"),
                "--workers",
                str(self.web_workers),
                "--bind",
                f"127.0.0.1:{self.web_port}",
                "--no-control-socket",
                "--graceful-timeout",
                "5",
                "--timeout",
                "30",
                "wsgi:create_app()",
            ],
            self.env(),
            self.run_dir / "web.log",
        )
        child.start()
        self.children.append(child)
        if not wait_until(self._healthy, 60, 0.2):
            raise RuntimeError("gunicorn did not become healthy:\n" + self.tail("web"))

    def _make_worker(self, number: int) -> Child:
        return Child(
            f"worker-{number}", [str(BIN / "amends"), "worker"], self.env(), self.run_dir / "workers.log"
        )

    def _healthy(self) -> bool:
        try:
            return requests.get(self.base_url + "/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def tail(self, name: str, chars: int = 4000) -> str:
        path = self.run_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # ----- looking inside

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.direct_database_url)

    def redis(self) -> Any:
        from redis import Redis

        return Redis.from_url(self.direct_redis_url)
