"""The one window for a duplicate email, pinned down: the SMTP server has accepted the message
and the database must now record it as sent.

- If the database is briefly unreachable at that moment (an outage, a failover), the sender
  keeps trying to record "sent" while its claim holds, so nothing is sent twice.
- If the process dies at that moment (SIGKILL), nothing can record it: once the claim
  expires the message is sent again, with the same Message-ID. test_faults.py measures how
  often that happens when workers are killed every few seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from plugin import sending
from plugin.emails import Rendered
from plugin.mailer import Email, SmtpTransport
from plugin.models import Message, Shop
from plugin.services import Services, build
from tests import services as real
from tests.conftest import make_config
from tests.factories import make_shop
from tests.reliability.proxy import TcpProxy
from tests.reliability.smtp import SmtpSink

pytestmark = pytest.mark.slow


class CutAfterAccept:
    """A real SMTP transport; right after the server accepts a message, the database goes away
    for `outage` seconds (the proxy between Amends and PostgreSQL is cut)."""

    kind = "smtp"

    def __init__(self, url: str, proxy: TcpProxy, outage: float):
        self.smtp = SmtpTransport(url)
        self.proxy = proxy
        self.outage = outage

    def send(self, email: Email) -> None:
        self.smtp.send(email)
        self.proxy.cut()
        threading.Timer(self.outage, self.proxy.restore).start()


@pytest.fixture
def through_proxy(database_url: str) -> Iterator[tuple[Services, TcpProxy, SmtpSink]]:
    if urlsplit(database_url).scheme.startswith("sqlite"):
        pytest.skip("PostgreSQL only")
    parts = urlsplit(database_url)
    proxy = TcpProxy("postgres", parts.hostname or "127.0.0.1", parts.port or 5432)
    sink = SmtpSink()
    url = database_url.replace(parts.netloc, f"{parts.username}@127.0.0.1:{proxy.port}")
    services = build(make_config(url))
    real.empty_tables(services.db.engine)
    try:
        yield services, proxy, sink
    finally:
        services.close()
        sink.close()
        proxy.close()


def _pending_message(services: Services) -> str:
    shop = make_shop(services, test_mode=False)
    message_id = f"<apology-window-{time.monotonic_ns()}@amends.test>"
    with services.db.session() as session:
        stored = session.scalar(sa.select(Shop).where(Shop.domain == shop.domain))
        assert stored is not None
        session.add(Message(shop_id=stored.id, kind="apology", message_id=message_id, state="pending"))
    return message_id


def _compose(session: Any, message: Message) -> tuple[sending.Envelope, Rendered]:
    envelope = sending.Envelope(
        mail_from="Shop <amends@example.test>",
        reply_to=None,
        recipient=sending.Recipient(to="jane@example.test"),
        headers={},
    )
    return envelope, Rendered(subject="Sorry", text="Sorry.\n", html="<p>Sorry.</p>")


@pytest.mark.parametrize("outage", [3.0, 10.0])
def test_a_database_outage_right_after_the_smtp_accept_sends_nothing_twice(
    through_proxy: tuple[Services, TcpProxy, SmtpSink], outage: float
) -> None:
    services, proxy, sink = through_proxy
    message_id = _pending_message(services)
    cutting = replace(services, mailer=CutAfterAccept(sink.url, proxy, outage))
    started = time.monotonic()
    result = sending.deliver(cutting, message_id, _compose)
    took = time.monotonic() - started
    assert result.state == "sent"
    assert took >= outage * 0.8  # it waited for the database rather than giving up
    # A retry of the job (as the queue would run it) finds it sent and sends nothing.
    again = sending.deliver(services, message_id, _compose)
    assert again.state == "already_sent"
    assert [r.message_id for r in sink.snapshot()] == [message_id]
    with services.db.session() as session:
        stored = sending.find(session, message_id)
        assert stored is not None and stored.state == "sent" and stored.sent_at is not None
