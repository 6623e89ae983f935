"""process_delivery: turn one recorded webhook delivery into incident changes.

The job reloads the delivery and its shop, builds a `DeliveryContext` and calls the handler
named for the topic in `actions.topics.HANDLERS`, inside one unit of work:

- the handler returns None → the delivery is "done"; a short reason → "ignored" (with it);
- it raises `RetryableError` → nothing it wrote is kept, the attempt is counted, and the job
  raises so the queue retries it with backoff (the sweep re-enqueues it if the queue gave up);
- it raises `PermanentError` → the delivery is "failed" with the reason; retrying cannot help.

A shop that is unknown, or no longer installed, gets nothing done (recorded as ignored with
the reason), except for the topics in `FOR_UNINSTALLED_SHOPS` (app/uninstalled and the
compliance topics), which still concern it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.utils import import_string

from actions import topics
from plugin import jobs
from plugin.db import utcnow
from plugin.errors import PermanentError, RetryableError
from plugin.models import Delivery, Shop
from plugin.models.delivery import DONE, FAILED, IGNORED, PENDING
from plugin.services import Services, current

if TYPE_CHECKING:
    from plugin.shopify.client import ShopifyClient
    from plugin.shopify.orders import OrderContext

log = logging.getLogger(__name__)

PROCESS_DELIVERY = "actions.deliveries.process_delivery"
DELIVERY_JOB = "delivery"  # a delivery's job id: "delivery-<id>"
# After this many attempts the sweep stops re-enqueueing a delivery and marks it failed.
MAX_ATTEMPTS = 25

Handler = Callable[["DeliveryContext"], "str | None"]


@dataclass
class DeliveryContext:
    """What a topic handler works with. `client` is created on first use.

    Network calls (Shopify) must not run inside a database transaction: a handler reads
    first, then makes its calls inside `ctx.outside_transaction()` (or through
    `ctx.order_context()`, which does so), then writes.
    """

    services: Services
    session: Session
    shop: Shop
    delivery: Delivery
    payload: dict[str, Any]
    _client: ShopifyClient | None = field(default=None, repr=False)
    _contexts: dict[int, OrderContext | None] = field(default_factory=dict, repr=False)
    _wrote: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        event.listen(self.session, "after_flush", self._flushed)

    def _flushed(self, *_args: Any) -> None:
        self._wrote = True

    @property
    def client(self) -> ShopifyClient:
        if self._client is None:
            from plugin.shopify.client import ShopifyClient

            self._client = ShopifyClient(self.services, self.shop.domain)
        return self._client

    @property
    def topic(self) -> str:
        return self.delivery.topic

    @property
    def webhook_id(self) -> str:
        return self.delivery.webhook_id

    @property
    def source(self) -> str:
        """The cause written on timelines: "webhook:refunds/create"."""
        return f"webhook:{self.delivery.topic}"

    @property
    def received_at(self) -> datetime:
        """When Shopify says the event happened (X-Shopify-Triggered-At), else when it came."""
        return self.delivery.triggered_at or self.delivery.received_at

    @contextmanager
    def outside_transaction(self) -> Iterator[None]:
        """End the current (read-only) transaction so a network call holds no database
        locks or connection; the session starts a fresh transaction on next use."""
        if self._wrote or self.session.new or self.session.dirty or self.session.deleted:
            raise RuntimeError("a handler must make its network calls before it writes")
        self.session.commit()
        yield

    def order_context(self, order_id: int) -> OrderContext | None:
        """The order's context from Shopify (one query per order and job), read outside the
        transaction. None when Shopify has no such order. Raises ShopifyError subclasses."""
        if order_id not in self._contexts:
            from plugin.settings import load
            from plugin.shopify.orders import fetch_order_context

            consent = load(self.session, self.shop.id).shop.respect_marketing_consent
            with self.outside_transaction():
                self._contexts[order_id] = fetch_order_context(self.client, order_id, consent=consent)
        return self._contexts[order_id]


def process_delivery(delivery_id: int) -> None:
    services = current()
    try:
        with services.db.session() as session:
            inline = jobs.collect_inline(session)  # a new incident's first response
            _process(services, session, delivery_id)
    except IntegrityError as error:
        # Another worker applied the same business key (or opened the order's incident) at the
        # same moment. Retrying finds its work: the delivery becomes done or ignored then.
        log.info("delivery %s raced a concurrent one; retrying", delivery_id)
        _count_attempt(services, delivery_id, "retrying: a concurrent delivery changed the same incident")
        raise RetryableError(f"delivery {delivery_id}: concurrent change", retry_after=1) from error
    except RetryableError as error:
        _count_attempt(services, delivery_id, f"retrying: {error}")
        raise
    except PermanentError as error:
        log.error("delivery %s failed for good: %s", delivery_id, error)
        _count_attempt(services, delivery_id, str(error), state=FAILED)
    except Exception as error:
        # A bug or an outage (database, network): counted, then retried by the queue.
        _count_attempt(services, delivery_id, f"retrying: {type(error).__name__}: {error}")
        raise
    else:
        jobs.run_inline(services, inline)


def _process(services: Services, session: Session, delivery_id: int) -> None:
    delivery = session.get(Delivery, delivery_id)
    if delivery is None or delivery.state != PENDING:
        return  # already handled (a duplicate job, or a sweep racing the first run)
    topic = delivery.topic
    handler_path = topics.HANDLERS.get(topic)
    if handler_path is None:
        _finish(delivery, IGNORED, f"topic {topic} is not handled by Amends", keep_payload=False)
        return
    shop = session.scalar(select(Shop).where(Shop.domain == delivery.shop_domain))
    if shop is None:
        _finish(delivery, IGNORED, f"shop {delivery.shop_domain} is not known to Amends", keep_payload=False)
        return
    if not shop.installed and topic not in topics.FOR_UNINSTALLED_SHOPS:
        _finish(delivery, IGNORED, f"shop {shop.domain} has not installed Amends", keep_payload=False)
        return
    if delivery.payload is None:
        _finish(delivery, IGNORED, "the payload was erased before it was processed")
        return
    payload = json.loads(delivery.payload)
    skip = topics.skip_reason(topic, payload)
    if skip is not None:
        _finish(delivery, IGNORED, skip)
        return

    handler: Handler = import_string(handler_path)
    ctx = DeliveryContext(services=services, session=session, shop=shop, delivery=delivery, payload=payload)
    outcome = handler(ctx)
    # The handler may have ended the transaction for a network call: make sure the delivery
    # is still what we loaded (another worker may have finished it meanwhile).
    session.refresh(delivery)
    if delivery.state != PENDING:
        return
    delivery.shop_id = shop.id
    if outcome is None:
        _finish(delivery, DONE, None)
        log.info("delivery %s (%s, shop %s) done", delivery.id, topic, shop.domain)
    else:
        _finish(delivery, IGNORED, outcome)
        log.info("delivery %s (%s, shop %s) ignored: %s", delivery.id, topic, shop.domain, outcome)


def _finish(delivery: Delivery, state: str, reason: str | None, keep_payload: bool = True) -> None:
    delivery.state = state
    delivery.reason = reason
    delivery.attempts += 1
    delivery.processed_at = utcnow()
    if not keep_payload:
        # Nothing will ever act on it: keep no customer data for a shop or topic we do not serve.
        delivery.payload = None


def _count_attempt(services: Services, delivery_id: int, reason: str, state: str = PENDING) -> None:
    try:
        with services.db.session() as session:
            delivery = session.get(Delivery, delivery_id)
            if delivery is None or delivery.state != PENDING:
                return
            delivery.attempts += 1
            delivery.reason = reason[:1000]
            delivery.state = state
            if state != PENDING:
                delivery.processed_at = utcnow()
    except Exception as error:
        # The database itself is failing; the queue's retry (or the sweep) will come back.
        log.error("delivery %s: could not record the attempt: %s", delivery_id, type(error).__name__)
