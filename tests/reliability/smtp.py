"""A real SMTP server (aiosmtpd) that can be made to fail: 451 for a while, or not listen at all.

Everything it accepts is kept with its Message-ID, so the scenarios can count emails per
incident: a duplicate is two accepted messages with the same Message-ID (or for the same
incident).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from tests.services import free_port

ACCEPT = "accept"
TEMPFAIL = "tempfail"
REFUSE = "refuse"


@dataclass(frozen=True)
class Received:
    message_id: str
    to: str
    subject: str
    at: float
    message: EmailMessage


class SmtpSink:
    def __init__(self, port: int | None = None):
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.received: list[Received] = []
        self.tempfailed = 0
        self.mode = ACCEPT
        self._lock = threading.Lock()
        self._controller: Any = None
        self._listen()

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def set_mode(self, mode: str) -> None:
        """ACCEPT, TEMPFAIL (every message answered 451) or REFUSE (the port is closed)."""
        if mode == REFUSE:
            self._stop()
        else:
            self._listen()
        with self._lock:
            self.mode = mode

    def close(self) -> None:
        self._stop()

    # aiosmtpd handler hook
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            if self.mode == TEMPFAIL:
                self.tempfailed += 1
                return "451 4.3.0 Mailbox temporarily unavailable, try again later"
            message = message_from_bytes(envelope.content, policy=policy.default)
            self.received.append(
                Received(
                    message_id=str(message.get("Message-ID", "")),
                    to=str(message.get("To", "")),
                    subject=str(message.get("Subject", "")),
                    at=time.monotonic(),
                    message=message,  # type: ignore[arg-type]
                )
            )
        return "250 2.0.0 Message accepted for delivery"

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def duplicates(self) -> dict[str, int]:
        """Message-IDs accepted more than once, with their counts."""
        counts = Counter(r.message_id for r in self.snapshot())
        return {mid: n for mid, n in counts.items() if n > 1}

    def wait_for(self, count: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.snapshot()) >= count:
                break
            time.sleep(0.1)
        return len(self.snapshot())

    def _listen(self) -> None:
        if self._controller is not None:
            return
        from aiosmtpd.controller import Controller

        controller = Controller(self, hostname=self.host, port=self.port)
        for attempt in range(50):
            try:
                controller.start()
                break
            except Exception:  # the port is still being released after a stop
                if attempt == 49:
                    raise
                time.sleep(0.1)
        self._controller = controller

    def _stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()
