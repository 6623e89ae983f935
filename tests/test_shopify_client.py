"""The Admin API transport's handling of Shopify's failures, for every caller: THROTTLED
(read from `extensions.cost`), 429 with Retry-After, 5xx with backoff, connection errors,
non-JSON and GraphQL errors. Shopify is faked with `responses`; the waits are real."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from plugin import budget
from plugin.errors import ShopifyResponseError, ShopifyRetryableError
from plugin.shopify.client import MAX_INLINE_WAIT_SECONDS, ShopifyClient
from plugin.shopify.orders import ORDER_CONTEXT, fetch_order_context
from tests.factories import SHOP, make_shop
from tests.shopify_fake import FakeAdmin, order_json

ORDER_ID = 5710211432673
VARIABLES = {"id": f"gid://shopify/Order/{ORDER_ID}"}


@pytest.fixture
def admin(services, shopify) -> Iterator[FakeAdmin]:
    make_shop(services)
    budget._local.reset()
    fake = FakeAdmin().install(shopify)
    fake.orders[ORDER_ID] = order_json(ORDER_ID, name="#1042")
    yield fake
    budget._local.reset()  # a drained model must not slow the next test down


@pytest.fixture
def client(services, admin) -> ShopifyClient:
    return ShopifyClient(services, SHOP)


def throttled(available: float, restore_rate: float, requested: float) -> tuple[int, dict, dict]:
    return (
        200,
        {},
        {
            "errors": [
                {
                    "message": "Throttled",
                    "extensions": {
                        "code": "THROTTLED",
                        "documentation": "https://shopify.dev/api/usage/rate-limits",
                    },
                }
            ],
            "extensions": {
                "cost": {
                    "requestedQueryCost": requested,
                    "actualQueryCost": None,
                    "throttleStatus": {
                        "maximumAvailable": 2000.0,
                        "currentlyAvailable": available,
                        "restoreRate": restore_rate,
                    },
                }
            },
        },
    )


def test_a_successful_call_reports_its_cost(client, admin):
    data = client.graphql(ORDER_CONTEXT, VARIABLES)
    assert data["order"]["name"] == "#1042"
    assert client.calls == 1 and client.points_used == 10
    assert client.last_cost is not None and client.last_cost.available == admin.available
    [call] = admin.calls
    assert call.token == "shpat_test_token"
    assert call.variables == VARIABLES


def test_the_order_context_reserves_what_shopify_will_request(client, admin):
    """The throttle admits a call only when the bucket holds its requested cost: the budget
    reserves exactly that (too little and the call is THROTTLED; too much slows every call)."""
    from graphql import OperationDefinitionNode, parse

    from plugin.shopify.orders import (
        ORDER_CONTEXT_COST,
        ORDER_CONTEXT_WITH_CONSENT,
        ORDER_CONTEXT_WITH_CONSENT_COST,
    )
    from plugin.standin.cost import fields_of, requested_cost

    for document, cost in (
        (ORDER_CONTEXT, ORDER_CONTEXT_COST),
        (ORDER_CONTEXT_WITH_CONSENT, ORDER_CONTEXT_WITH_CONSENT_COST),
    ):
        [operation] = [d for d in parse(document).definitions if isinstance(d, OperationDefinitionNode)]
        roots = fields_of(operation.selection_set, {})
        assert requested_cost("query", roots, {}, VARIABLES) == cost
    assert ORDER_CONTEXT_COST < ORDER_CONTEXT_WITH_CONSENT_COST <= 20


def test_what_a_call_did_not_spend_goes_back_to_the_budget(services, client, admin):
    admin.available = 100.0
    client.graphql(ORDER_CONTEXT, VARIABLES)  # the model learns the fake's bucket
    before = budget.snapshot(services, SHOP)
    assert before is not None and before.available < 101.0
    client.graphql(ORDER_CONTEXT, VARIABLES, cost=50)  # reserves 50; the fake spends 10
    after = budget.snapshot(services, SHOP)
    assert after is not None and after.available >= before.available - 10 - 0.5


def test_throttled_waits_for_the_bucket_to_refill_then_retries(client, admin):
    # 20 requested, 2 available, 100 points a second: about 0.18 s to wait.
    admin.fail_next("order", throttled(available=2.0, restore_rate=100.0, requested=20.0))
    started = time.monotonic()
    data = client.graphql(ORDER_CONTEXT, VARIABLES, cost=20)
    waited = time.monotonic() - started
    assert data["order"]["id"] == VARIABLES["id"]
    assert len(admin.of("order")) == 2
    assert 0.15 <= waited < MAX_INLINE_WAIT_SECONDS


def test_throttled_with_a_long_wait_goes_back_to_the_queue(client, admin):
    # 1,000 points wanted at 50 a second: 20 s, too long to hold a worker.
    admin.fail_next("order", throttled(available=0.0, restore_rate=50.0, requested=1000.0))
    with pytest.raises(ShopifyRetryableError) as raised:
        client.graphql(ORDER_CONTEXT, VARIABLES, cost=1000)
    assert raised.value.retry_after == pytest.approx(20.0)
    assert len(admin.of("order")) == 1


def test_429_honours_a_short_retry_after(client, admin):
    admin.fail_next("order", (429, {"Retry-After": "1"}, {"errors": "Exceeded 2 calls per second"}))
    started = time.monotonic()
    client.graphql(ORDER_CONTEXT, VARIABLES)
    assert 1.0 <= time.monotonic() - started < 3.0
    assert len(admin.of("order")) == 2


def test_429_with_a_long_retry_after_raises_with_it(client, admin):
    admin.fail_next("order", (429, {"Retry-After": "30"}, {"errors": "Exceeded 2 calls per second"}))
    with pytest.raises(ShopifyRetryableError) as raised:
        client.graphql(ORDER_CONTEXT, VARIABLES)
    assert raised.value.retry_after == 30
    assert len(admin.of("order")) == 1


def test_5xx_backs_off_then_succeeds(client, admin):
    admin.fail_next("order", FakeAdmin.server_error(502, retry_after=None))
    started = time.monotonic()
    data = client.graphql(ORDER_CONTEXT, VARIABLES)
    assert data["order"]["name"] == "#1042"
    assert 2.0 <= time.monotonic() - started < 4.0  # the first backoff step is 2 s
    assert len(admin.of("order")) == 2


def test_5xx_with_a_long_retry_after_raises_retryable(client, admin):
    admin.fail_next("order", FakeAdmin.server_error(503, retry_after="60"))
    with pytest.raises(ShopifyRetryableError) as raised:
        client.graphql(ORDER_CONTEXT, VARIABLES)
    assert raised.value.retry_after == 60
    assert "503" in str(raised.value)


def test_a_connection_error_is_retryable(client, admin, shopify):
    shopify.replace(shopify.registered()[0].method, admin.url, body=requests.ConnectionError("refused"))
    with pytest.raises(ShopifyRetryableError) as raised:
        client.graphql(ORDER_CONTEXT, VARIABLES)
    assert "ConnectionError" in str(raised.value)


def test_a_non_json_answer_is_retryable(client, admin, shopify):
    shopify.replace(shopify.registered()[0].method, admin.url, body="<html>Bad gateway</html>", status=200)
    with pytest.raises(ShopifyRetryableError, match="non-JSON"):
        client.graphql(ORDER_CONTEXT, VARIABLES)


def test_json_that_is_not_an_object_is_retryable(client, admin):
    admin.fail_next("order", lambda call: (200, {}, "maintenance"))  # type: ignore[arg-type,return-value]
    with pytest.raises(ShopifyRetryableError, match="not an object"):
        client.graphql(ORDER_CONTEXT, VARIABLES)


def test_graphql_errors_that_are_not_throttling_are_permanent(client, admin):
    admin.fail_next(
        "order",
        (
            200,
            {},
            {
                "errors": [
                    {"message": "Access denied for order field.", "extensions": {"code": "ACCESS_DENIED"}}
                ]
            },
        ),
    )
    with pytest.raises(ShopifyResponseError, match="Access denied"):
        client.graphql(ORDER_CONTEXT, VARIABLES)


def test_the_order_context_names_what_shopify_withheld(client, admin):
    admin.orders[ORDER_ID] = order_json(ORDER_ID, customer_id=None, email=None)
    context = fetch_order_context(client, ORDER_ID, consent=True)
    assert context is not None
    assert context.missing == ["customer", "email"]
    assert context.customer_id is None and context.marketing_consent is None
    assert fetch_order_context(client, 1, consent=False) is None  # no such order


def test_the_proxy_and_ca_bundle_come_from_the_environment_once_per_shop(monkeypatch):
    """The shared session does not look at the environment on each call (trust_env off), so
    the client must pass what requests would have found there."""
    from plugin.shopify.client import from_environment, shared_session

    url = f"https://{SHOP}/admin/api/2025-10/graphql.json"
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corporate.pem")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    from_environment.cache_clear()
    try:
        assert from_environment(url) == ({"https": "http://proxy.internal:3128"}, "/etc/ssl/corporate.pem")
        monkeypatch.setenv("NO_PROXY", ".myshopify.com")
        assert from_environment(url)[0]["https"] == "http://proxy.internal:3128"  # read once
        from_environment.cache_clear()
        assert from_environment(url) == ({}, "/etc/ssl/corporate.pem")  # the shop bypasses it
    finally:
        from_environment.cache_clear()
    assert shared_session().trust_env is False
