"""POST /webhooks: verify, record, hand off, answer. No Shopify or email call happens here."""

from __future__ import annotations

import logging
from datetime import datetime

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError

from actions import topics
from plugin.services import Services
from webhooks.recorder import Recorder
from webhooks.verify import Rejected, verify

log = logging.getLogger(__name__)

blueprint = Blueprint("webhooks", __name__)


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
    recorder: Recorder = current_app.extensions["amends.recorder"]
    try:
        delivery_id, handed_off = recorder.record(values)
    except SQLAlchemyError as error:
        # Not stored, so not acknowledged: Shopify will retry.
        log.error("webhook %s not recorded: %s", verdict.webhook_id, type(error).__name__)
        return _answer(503, "unavailable", "could not record the delivery; retry later")
    if delivery_id is None:
        log.info("webhook %s (%s) is a duplicate", verdict.webhook_id, verdict.topic)
        return _answer(200, "duplicate", "already received")
    if skip is not None:
        log.info("webhook %s (%s) ignored: %s", verdict.webhook_id, verdict.topic, skip)
        return _answer(200, "ignored", skip)
    if not handed_off:
        # Recorded, so acknowledged: the sweep enqueues it once the queue is back.
        log.error("delivery %s recorded but not enqueued: the queue is unavailable", delivery_id)
    return _answer(200, "accepted", "recorded")


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
