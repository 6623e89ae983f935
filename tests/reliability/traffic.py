"""Shopify's side of a scenario: the webhooks for N incidents, and a sender that behaves like
Shopify (signs each body, retries anything but a 2xx with backoff, keeps the webhook id on a
retry), bounded in concurrency and time.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from plugin import samples
from plugin.signing import webhook_signature

FIRST_ORDER = 5_300_000_000_000
KINDS = ("late_delivery", "return", "refund")


@dataclass
class Webhook:
    topic: str
    payload: dict[str, Any]
    webhook_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    incident: int = 0  # which planned incident it belongs to
    role: str = "open"  # open, join, resolve
    # When the event happened (X-Shopify-Triggered-At): the same on every copy and retry.
    triggered_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    body: bytes = b""

    def __post_init__(self) -> None:
        self.body = json.dumps(self.payload).encode()

    def again(self, new_id: bool = False) -> Webhook:
        """The same delivery once more; with `new_id`, as Shopify's retry under a new id."""
        copy = Webhook(
            self.topic,
            self.payload,
            self.webhook_id,
            self.event_id,
            self.incident,
            self.role,
            self.triggered_at,
        )
        if new_id:
            copy.webhook_id = str(uuid.uuid4())
        return copy


@dataclass
class Plan:
    """The incidents a scenario expects, and the webhooks that should produce them."""

    orders: dict[int, str]  # order id → kind
    webhooks: list[Webhook]
    joined: set[int] = field(default_factory=set)  # order ids that also got a second signal
    resolved: set[int] = field(default_factory=set)  # order ids that also got a resolving signal


def plan_incidents(
    count: int,
    rng: random.Random,
    first_order: int = FIRST_ORDER,
    kinds: Iterable[str] = KINDS,
    join_every: int = 0,
    resolve_every: int = 0,
) -> Plan:
    """One opening webhook per incident, kinds in turn. Every `join_every`-th incident also
    gets a second signal for the same order (it must join, not apologise twice); every
    `resolve_every`-th a resolving one that happened later (delivered, returns/close)."""
    kinds = tuple(kinds)
    base = datetime.now(UTC) - timedelta(hours=2)
    orders: dict[int, str] = {}
    webhooks: list[Webhook] = []
    plan = Plan(orders, webhooks)
    for n in range(count):
        order_id = first_order + n
        # Business keys (event, return, refund ids) follow the order, so that two plans in
        # one run never share one (a shared key is, rightly, a duplicate to Amends).
        key = order_id - 5_000_000_000_000
        first = len(webhooks)
        kind = kinds[n % len(kinds)]
        orders[order_id] = kind
        happened = base + timedelta(seconds=n)
        join = bool(join_every) and n % join_every == 1
        resolve = bool(resolve_every) and n % resolve_every == 2 and kind != "refund"
        if kind == "late_delivery":
            fulfillment_id = 4_300_000_000_000 + key
            webhooks.append(
                Webhook(
                    "fulfillment_events/create",
                    samples.fulfillment_event(
                        "delayed", order_id, fulfillment_id, _iso(happened), event_id=8_000_000_000 + 10 * key
                    ),
                    incident=order_id,
                )
            )
            if join:
                webhooks.append(
                    Webhook(
                        "fulfillment_events/create",
                        samples.fulfillment_event(
                            "attempted_delivery",
                            order_id,
                            fulfillment_id,
                            _iso(happened + timedelta(minutes=5)),
                            event_id=8_000_000_000 + 10 * key + 1,
                        ),
                        incident=order_id,
                        role="join",
                    )
                )
            if resolve:
                webhooks.append(
                    Webhook(
                        "fulfillment_events/create",
                        samples.fulfillment_event(
                            "delivered",
                            order_id,
                            fulfillment_id,
                            _iso(happened + timedelta(minutes=30)),
                            event_id=8_000_000_000 + 10 * key + 2,
                        ),
                        incident=order_id,
                        role="resolve",
                    )
                )
        elif kind == "return":
            return_id = 9_300_000_000 + key
            webhooks.append(
                Webhook("returns/request", samples.return_request(order_id, return_id), incident=order_id)
            )
            if join:
                payload = samples.return_request(order_id, return_id)
                payload["status"] = "open"
                webhooks.append(Webhook("returns/approve", payload, incident=order_id, role="join"))
            if resolve:
                webhooks.append(
                    Webhook(
                        "returns/close",
                        samples.return_status("closed", return_id, order_id),
                        incident=order_id,
                        role="resolve",
                    )
                )
        else:
            webhooks.append(
                Webhook("refunds/create", samples.refund(order_id, 8_300_000_000 + key), incident=order_id)
            )
        for hook in webhooks[first:]:
            if hook.incident == order_id:
                offset = {"open": 0, "join": 5, "resolve": 30}[hook.role]
                hook.triggered_at = _iso(happened + timedelta(minutes=offset))
        if join:
            plan.joined.add(order_id)
        if resolve:
            plan.resolved.add(order_id)
    return plan


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


@dataclass
class SendStats:
    posts: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    retried: int = 0  # webhooks that needed more than one POST
    undelivered: list[Webhook] = field(default_factory=list)  # never answered 2xx in time
    acknowledged: set[str] = field(default_factory=set)  # webhook ids answered 2xx
    lock: threading.Lock = field(default_factory=threading.Lock)

    def as_dict(self) -> dict[str, Any]:
        return {
            "webhook POSTs": self.posts,
            "answers": dict(sorted(self.statuses.items())),
            "webhooks retried by 'Shopify'": self.retried,
            "webhooks never acknowledged": len(self.undelivered),
        }


class ShopifySender:
    """POSTs signed webhooks like Shopify: anything but a 2xx (or no answer within 5 s) is
    retried with the same webhook id, after 0.5 s, 1 s, 2 s … (capped at `max_backoff`),
    until `deadline`. `rate` spaces the first attempts (webhooks per second)."""

    def __init__(self, base_url: str, secret: str, shop: str, concurrency: int = 8, max_backoff: float = 5.0):
        self.url = base_url.rstrip("/") + "/webhooks"
        self.secret = secret
        self.shop = shop
        self.concurrency = concurrency
        self.max_backoff = max_backoff
        self.stats = SendStats()
        self.hmacs: set[str] = set()  # what was sent, for the log scan (a bounded sample)
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False  # 127.0.0.1 only: no proxy from the environment
        return session

    def post(self, hook: Webhook) -> int:
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": hook.topic,
            "X-Shopify-Shop-Domain": self.shop,
            "X-Shopify-Hmac-Sha256": webhook_signature(hook.body, self.secret),
            "X-Shopify-Webhook-Id": hook.webhook_id,
            "X-Shopify-Event-Id": hook.event_id,
            "X-Shopify-API-Version": "2026-07",
            "X-Shopify-Triggered-At": hook.triggered_at,
        }
        if len(self.hmacs) < 20_000:
            self.hmacs.add(headers["X-Shopify-Hmac-Sha256"])
        try:
            # Shopify: 1 s to connect, 5 s in all.
            status = (
                self._session().post(self.url, data=hook.body, headers=headers, timeout=(1, 5)).status_code
            )
            label = str(status)
        except requests.RequestException as error:
            status, label = 0, type(error).__name__
        with self.stats.lock:
            self.stats.posts += 1
            self.stats.statuses[label] += 1
        return status

    def deliver_one(self, hook: Webhook, deadline: float) -> bool:
        wait = 0.5
        tries = 0
        while True:
            tries += 1
            if 200 <= self.post(hook) < 300:
                with self.stats.lock:
                    self.stats.acknowledged.add(hook.webhook_id)
                    if tries > 1:
                        self.stats.retried += 1
                return True
            if time.monotonic() + wait > deadline:
                with self.stats.lock:
                    self.stats.undelivered.append(hook)
                return False
            time.sleep(wait)
            wait = min(wait * 2, self.max_backoff)

    def deliver(self, hooks: list[Webhook], deadline: float, rate: float | None = None) -> SendStats:
        """Deliver every webhook (in the given order, `concurrency` at a time)."""
        started = time.monotonic()
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="shopify-sender") as pool:
            futures = []
            for i, hook in enumerate(hooks):
                if rate:
                    due = started + i / rate
                    pause = due - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                futures.append(pool.submit(self.deliver_one, hook, deadline))
            for future in futures:
                future.result()
        return self.stats


def deliver_in_background(
    sender: ShopifySender, hooks: list[Webhook], deadline: float, rate: float | None = None
) -> threading.Thread:
    """`sender.deliver(...)` in a thread (join it before reading `sender.stats`)."""
    thread = threading.Thread(
        target=sender.deliver, args=(hooks, deadline, rate), name="shopify-delivery", daemon=True
    )
    thread.start()
    return thread


def redeliveries(plan: Plan, rng: random.Random, copies: int = 3, new_id_share: float = 0.2) -> list[Webhook]:
    """Every webhook `copies` times, shuffled; a share of the copies under a new webhook id
    (as when Shopify re-sends an event as a new delivery)."""
    out: list[Webhook] = []
    for hook in plan.webhooks:
        out.append(hook)
        for _ in range(copies - 1):
            out.append(hook.again(new_id=rng.random() < new_id_share))
    rng.shuffle(out)
    return out
