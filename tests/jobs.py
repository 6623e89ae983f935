"""Job functions for the queue tests. They record what they did in Redis or the outbox table,
through the same services a real job uses."""

from __future__ import annotations

import threading
import time

from plugin.mailer import Email
from plugin.services import current

# Set by the embedded-queue test to hold the job until the response is back.
release = threading.Event()


def wait_then_mark(message_id: str) -> None:
    release.wait(5)
    _mark(message_id)


def mark(message_id: str) -> None:
    _mark(message_id)


# The order jobs ran in, for the queue-order tests.
ran: list[str] = []


def note(key: str) -> None:
    ran.append(key)


def fail_once_then_mark(key: str) -> None:
    redis = current().redis
    assert redis is not None
    if redis.incr(f"attempts:{key}") == 1:
        raise RuntimeError("first attempt fails on purpose")
    redis.rpush("done", key)


def _mark(message_id: str) -> None:
    services = current()
    services.mailer.send(
        Email(
            to="jobs@example.test",
            subject="job ran",
            text="ran",
            mail_from="t@example.test",
            message_id=message_id,
        )
    )


def sleep(seconds: float) -> None:
    time.sleep(seconds)
