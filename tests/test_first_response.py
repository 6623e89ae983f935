# ruff: noqa: F401, F811 - pytest fixtures imported from tests.actions_support
"""first_response: a new incident's apology then its follow-up in one job; a retry redoes only
what is undone, and a failing apology does not hold the task back."""

from __future__ import annotations

import pytest

from actions.first_response import first_response
from plugin.errors import ShopifyRetryableError
from plugin.models.message import SENT
from tests.actions_support import (
    admin,
    mail_app,
    mail_services,
    make_incident,
    messages,
    shop_id,
    task_of,
)

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
