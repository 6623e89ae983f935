"""POST /webhooks: verify, record, hand off, answer. No Shopify or email call happens here."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import cast

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import Table
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from actions import topics
from actions.deliveries import PROCESS_DELIVERY
from plugin.models import Delivery
from plugin.services import Services
from webhooks.verify import Rejected, verify

log = logging.getLogger(__name__)

blueprint = Blueprint("webhooks", __name__)

_DELIVERIES = cast(Table, Delivery.__table__)
_INSERT_DELIVERY = _DELIVERIES.insert().returning(_DELIVERIES.c.id)


@blueprint.route("/webhooks", methods=["POST"])
def receive() -> ResponseReturnValue:
    services: Services = current_app.extensions["amends"]
    limit = services.config.webhook_max_bytes
    if request.content_length is not None and request.content_length > limit:
        log.warning("webhook rejected: body of %s bytes is over %s", request.content_length, limit)
        return _answer(413, "too_large", f"body is larger than {limit} bytes")
    try:
        body = request.get_data(cache=False)
    except Exception as error:
        # The server could not read the body (a broken chunked encoding, a client gone):
        # each server raises its own class, and none of it is a delivery.
        log.warning("webhook rejected: the body could not be read (%s)", type(error).__name__)
        return _answer(400, "bad_body", "the request body could not be read")
    if len(body) > limit:
        return _answer(413, "too_large", f"body is larger than {limit} bytes")

    verdict = verify(body, request.headers, services.config.webhook_secrets)
    if isinstance(verdict, Rejected):
        log.warning(
            "webhook rejected: %s (topic=%s shop=%s webhook=%s)",
            verdict.reason,
            request.headers.get("X-Shopify-Topic"),
            request.headers.get("X-Shopify-Shop-Domain"),
            request.headers.get("X-Shopify-Webhook-Id"),
        )
        return _answer(verdict.status, verdict.reason, _MESSAGES[verdict.reason])

    # Most fulfillment events (in transit, out for delivery…) need nothing: answer at once.
    skip = topics.skip_reason(verdict.topic, verdict.payload)
    if skip is not None and topics.is_known(verdict.topic):
        return _answer(200, "ignored", skip)

    values = {
        "webhook_id": verdict.webhook_id,
        "topic": verdict.topic,
        "shop_domain": verdict.shop_domain,
        "event_id": verdict.event_id,
        "api_version": verdict.api_version,
        "triggered_at": _parse_time(verdict.triggered_at),
        # An unhandled topic is kept as a record of what came, without its (personal) data.
        "payload": body.decode("utf-8") if skip is None else None,
        "state": "pending" if skip is None else "ignored",
        "reason": skip,
    }
    try:
        delivery_id = _record(services, values)
    except IntegrityError:
        log.info("webhook %s (%s) is a duplicate", verdict.webhook_id, verdict.topic)
        return _answer(200, "duplicate", "already received")
    except SQLAlchemyError as error:
        # Not stored, so not acknowledged: Shopify will retry.
        log.error("webhook %s not recorded: %s", verdict.webhook_id, type(error).__name__)
        return _answer(503, "unavailable", "could not record the delivery; retry later")

    if skip is None:
        try:
            services.queue.hand_off(PROCESS_DELIVERY, delivery_id, job_id=f"delivery-{delivery_id}")
        except Exception as error:
            # Recorded, so acknowledged: the sweep enqueues it once the queue is back.
            log.error("delivery %s recorded but not enqueued: %s", delivery_id, type(error).__name__)
    else:
        log.info("webhook %s (%s) ignored: %s", verdict.webhook_id, verdict.topic, skip)
    return _answer(200, "accepted" if skip is None else "ignored", skip or "recorded")


_MESSAGES = {
    "missing_hmac": "the X-Shopify-Hmac-Sha256 header is missing",
    "bad_signature": "the HMAC signature does not match the body",
    "missing_topic": "the X-Shopify-Topic header is missing",
    "missing_shop": "the X-Shopify-Shop-Domain header is missing",
    "bad_shop_domain": "X-Shopify-Shop-Domain is not a *.myshopify.com domain",
    "missing_webhook_id": "the X-Shopify-Webhook-Id header is missing",
    "bad_header": "an X-Shopify-* header is too long or holds unprintable characters",
    "bad_encoding": "the body is not valid UTF-8",
    "not_json": "the body is not valid JSON",
    "not_an_object": "the body must be a JSON object",
}


def _record(services: Services, values: Mapping[str, object]) -> int:
    """One Core INSERT that commits by itself: the ORM unit of work and a transaction's
    BEGIN/COMMIT cost several times more on this hot path, and nothing else is written here."""
    for attempt in (1, 2):
        try:
            with services.db.autocommit.connect() as connection:
                return int(connection.execute(_INSERT_DELIVERY, values).scalar_one())
        except DBAPIError as error:
            # A pooled connection found dead (the database restarted): the pool is renewed,
            # try once more. Had the first try been committed, the second is a duplicate.
            if attempt == 2 or not error.connection_invalidated:
                raise
    raise AssertionError("unreachable")


def _answer(status: int, result: str, message: str) -> ResponseReturnValue:
    return jsonify({"result": result, "message": message}), status


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None
