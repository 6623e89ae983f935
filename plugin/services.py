"""The shared services of one process: configuration, database, queue, mail, cipher.

Built once per process (by `create_app` for the web, on first use in a worker) from the
configuration; nothing here holds state that another process would need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plugin.config import Config
from plugin.crypto import TokenCipher
from plugin.db import Database
from plugin.mailer import Transport, make_transport
from plugin.queue import EmbeddedQueue, JobQueue, RedisQueue


@dataclass
class Services:
    config: Config
    db: Database
    queue: JobQueue
    mailer: Transport
    cipher: TokenCipher

    @property
    def redis(self) -> Any | None:
        """The Redis client when the queue runs on Redis (shared locks and budgets use it)."""
        return getattr(self.queue, "redis", None)

    def close(self) -> None:
        self.queue.close()
        self.db.dispose()


_current: Services | None = None


def build(config: Config) -> Services:
    db = Database(config.database_url)
    retry_base = float(config.extra.get("retry_base_seconds", 2.0))
    queue: JobQueue = (
        RedisQueue(config.redis_url, config.queue_name, retry_base=retry_base)
        if config.redis_url
        else EmbeddedQueue(retry_base=retry_base)
    )
    return Services(
        config=config,
        db=db,
        queue=queue,
        mailer=make_transport(config.smtp_url, db),
        cipher=TokenCipher(config.token_keys, config.secret_key),
    )


def init(config: Config) -> Services:
    """Make `config`'s services the process's current ones."""
    global _current
    _current = build(config)
    return _current


def current() -> Services:
    """The process's services; a worker builds them from the environment on first use."""
    global _current
    if _current is None:
        _current = build(Config.from_env())
    return _current
