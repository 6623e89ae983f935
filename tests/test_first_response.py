# ruff: noqa: F401, F811 - pytest fixtures imported from tests.actions_support
"""first_response: a new incident's apology then its follow-up, in the delivery's own job; a
retry redoes only what is undone, a failing apology does not hold the task back, and what
fails in the delivery's job is queued to be retried."""

from __future__ import annotations

import time

import pytest
from rq.registry import ScheduledJobRegistry

from actions.deliveries import process_delivery
from actions.first_response import first_response
from plugin.errors import ShopifyRetryableError
from plugin.models.delivery import DONE
from plugin.models.message import SENT
from plugin.services import Services
from plugin.worker import run_worker
from tests.actions_support import (
    admin,
    mail_app,
    mail_services,
    make_incident,
    messages,
    queued,
    shop_id,
    task_of,
)
from tests.factories import make_shop
from tests.intake import ORDER_ID, context_order, deliveries, incidents, payload, post

pytestmark = pytest.mark.redis


def test_the_apology_then_the_task_and_the_tag(mail_services, admin, shop_id, smtp_server):
    incident_id = make_incident(mail_services, shop_id)
    first_response(incident_id)
    [email] = smtp_server.wait_for(1)
    assert email["Message-ID"] == f"<apology-{incident_id}@amends.example.test>"
    assert task_of(mail_services, incident_id).order_tagged_at is not None
    # The apology's calls come before the tag's.
    assert [call.operation for call in admin.calls] == ["discountCodeBasicCreate", "tagsAdd"]

    first_response(incident_id)  # a repeated job changes nothing
    assert smtp_server.wait_for(2, timeout=0.3) == [email]
    assert len(admin.discount_mutations) == 1 and len(admin.of("tagsAdd")) == 1


def test_a_failing_apology_still_opens_the_task_and_the_retry_finishes_it(
    mail_services, admin, shop_id, smtp_server
):
    incident_id = make_incident(mail_services, shop_id)
    admin.fail_next("discountCodeBasicCreate", admin.server_error(503, retry_after="60"))
    with pytest.raises(ShopifyRetryableError):
        first_response(incident_id)
    assert task_of(mail_services, incident_id).order_tagged_at is not None  # not held back
    assert smtp_server.wait_for(1, timeout=0.3) == []

    first_response(incident_id)  # the queue's retry
    assert len(smtp_server.wait_for(1)) == 1
    assert messages(mail_services, incident_id)["apology"].state == SENT
    assert len(admin.discounts) == 1 and len(admin.of("tagsAdd")) == 1


def test_a_failing_tag_is_retried_without_a_second_apology(mail_services, admin, shop_id, smtp_server):
    incident_id = make_incident(mail_services, shop_id)
    admin.fail_next("tagsAdd", admin.server_error(502, retry_after="30"))
    with pytest.raises(ShopifyRetryableError):
        first_response(incident_id)
    assert len(smtp_server.wait_for(1)) == 1

    first_response(incident_id)  # the queue's retry
    assert task_of(mail_services, incident_id).order_tagged_at is not None
    assert smtp_server.wait_for(2, timeout=0.3)[1:] == []
    assert len(admin.discount_mutations) == 1


FIRST = "actions.first_response.first_response"


@pytest.fixture
def delivery_id(mail_app, mail_services: Services, admin) -> int:
    """A late-delivery webhook recorded for a live shop whose order Shopify knows."""
    admin.orders[ORDER_ID] = context_order()
    make_shop(mail_services)
    response = post(mail_app.test_client(), "fulfillment_events/create", payload("fulfillment_event_delayed"))
    assert response.status_code == 200
    [delivery] = deliveries(mail_services)
    return delivery.id


def only_incident_id(services: Services) -> int:
    [incident] = incidents(services)
    return incident.id


def delivery_state(services: Services) -> str:
    [delivery] = deliveries(services)
    return delivery.state


def test_the_delivery_job_sends_its_new_incidents_apology_itself(
    mail_services, admin, delivery_id, smtp_server
):
    process_delivery(delivery_id)  # the job, as a worker runs it

    [email] = smtp_server.wait_for(1)
    incident_id = only_incident_id(mail_services)
    assert email["Message-ID"] == f"<apology-{incident_id}@amends.example.test>"
    assert task_of(mail_services, incident_id).order_tagged_at is not None
    assert delivery_state(mail_services) == DONE
    assert [call.operation for call in admin.calls] == ["order", "discountCodeBasicCreate", "tagsAdd"]
    assert [job for job in queued(mail_services) if job[0] == FIRST] == []  # no job of its own


def test_a_first_response_failing_in_the_delivery_job_is_queued_and_the_queue_finishes_it(
    mail_services, admin, delivery_id, smtp_server
):
    smtp_server.fail_next("451 4.3.0 Try again later")
    process_delivery(delivery_id)  # does not raise: the delivery itself is done

    incident_id = only_incident_id(mail_services)
    assert delivery_state(mail_services) == DONE
    assert task_of(mail_services, incident_id) is not None  # the follow-up was not held back
    assert (FIRST, (incident_id,), f"first-{incident_id}") in queued(mail_services)

    run_worker(mail_services, burst=True)  # the queue's retry
    [email] = smtp_server.wait_for(1)
    assert email["Message-ID"] == f"<apology-{incident_id}@amends.example.test>"
    assert messages(mail_services, incident_id)["apology"].state == SENT
    assert len(admin.discount_mutations) == 1 and len(admin.of("tagsAdd")) == 1


def test_a_shopify_retry_after_is_honoured_when_the_first_response_is_queued(
    mail_services, admin, delivery_id, smtp_server
):
    admin.fail_next("discountCodeBasicCreate", admin.server_error(503, retry_after="60"))
    process_delivery(delivery_id)

    incident_id = only_incident_id(mail_services)
    assert delivery_state(mail_services) == DONE
    registry = ScheduledJobRegistry(queue=mail_services.queue.rq)  # type: ignore[attr-defined]
    assert registry.get_job_ids() == [f"first-{incident_id}"]
    run_at = registry.get_scheduled_time(f"first-{incident_id}").timestamp()
    assert 50 < run_at - time.time() <= 61  # Shopify asked for 60 s
    assert smtp_server.wait_for(1, timeout=0.3) == []
