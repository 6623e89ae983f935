"""The Shopify stand-in: cost and bucket arithmetic, THROTTLED, TAKEN, faults, tokens, stats.

It is the benchmark's and `amends dev`'s Shopify, so it must behave like Shopify where Amends
depends on it; the data it answers with is checked against Shopify's published schema."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from plugin.standin import PLANS, Bucket, StandIn
from plugin.standin.cost import requested_cost
from plugin.standin.shop import ShopState

SHOP = "bench-shop.myshopify.com"
TOKEN = "shpat_test"

ORDER_QUERY = """
query OrderContext($id: ID!) {
  order(id: $id) {
    id name email customerLocale
    customer { id firstName email locale emailMarketingConsent { marketingState } }
    fulfillments(first: 5) {
      id estimatedDeliveryAt deliveredAt displayStatus
      trackingInfo(first: 1) { company number url }
    }
  }
}
"""

CREATE_BASIC = """
mutation CreateCode($input: DiscountCodeBasicInput!) {
  discountCodeBasicCreate(basicCodeDiscount: $input) {
    codeDiscountNode {
      id
      codeDiscount { ... on DiscountCodeBasic { title codes(first: 1) { nodes { code } } } }
    }
    userErrors { field message code }
  }
}
"""


def code_input(code: str = "SORRY-7KQ2-M4XP") -> dict[str, Any]:
    return {
        "title": "Apology for order #1001",
        "code": code,
        "startsAt": "2026-11-01T00:00:00Z",
        "endsAt": "2026-12-01T00:00:00Z",
        "usageLimit": 1,
        "appliesOncePerCustomer": True,
        "customerGets": {"value": {"percentage": 0.15}, "items": {"all": True}},
        "context": {"customers": {"add": ["gid://shopify/Customer/7000000001"]}},
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn() as server:
        yield server


def post(
    standin: StandIn, query: str, variables: dict[str, Any] | None = None, **kwargs: Any
) -> requests.Response:
    shop = kwargs.pop("shop", SHOP)
    token = kwargs.pop("token", TOKEN)
    url = standin.admin_base.replace("{shop}", shop) + "/admin/api/2026-07/graphql.json"
    headers = {"X-Shopify-Access-Token": token} if token else {}
    return requests.post(url, json={"query": query, "variables": variables or {}}, headers=headers, timeout=5)


# -- the bucket and the cost ------------------------------------------------------------------


def test_bucket_takes_refills_at_the_restore_rate_and_never_overflows():
    clock = Clock()
    bucket = Bucket(PLANS["standard"], clock=clock)
    assert bucket.available == 2000
    assert bucket.take(1990)
    assert bucket.available == pytest.approx(10)
    assert not bucket.take(11)  # short: nothing is taken
    assert bucket.available == pytest.approx(10)
    clock.now += 0.5  # 100 points/s
    assert bucket.available == pytest.approx(60)
    assert bucket.wait_for(110) == pytest.approx(0.5)
    bucket.refund(25)
    assert bucket.available == pytest.approx(85)
    clock.now += 3600
    assert bucket.available == 2000
    bucket.refund(500)
    assert bucket.available == 2000


@pytest.mark.parametrize(
    ("document", "cost"),
    [
        ("{ shop { name } }", 1),  # an object 1, scalars 0
        ("{ order(id: 1) { id customer { firstName } } }", 2),
        ("{ orders(first: 10) { edges { node { id } } } }", 12),  # 2 + 10 × 1
        ("{ orders(first: 10) { nodes { id fulfillments(first: 3) { id } } } }", 42),  # 2 + 10 × (1 + 3)
        ("{ order(id: 1) { fulfillments(first: 5) { trackingInfo(first: 1) { number } } } }", 11),
        ('mutation { tagsAdd(id: 1, tags: ["a"]) { node { id } userErrors { message } } }', 10),
    ],
)
def test_requested_cost_follows_shopifys_rules(document: str, cost: float):
    from graphql import parse
    from graphql.language import OperationDefinitionNode

    from plugin.standin.cost import fields_of

    operation = parse(document).definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    roots = fields_of(operation.selection_set, {})
    assert requested_cost(operation.operation.value, roots, {}, {}) == cost


def test_every_answer_carries_the_cost_and_the_unused_points_are_refunded(standin: StandIn):
    standin.shop(SHOP).seed_orders(3)
    body = post(standin, "{ orders(first: 50) { edges { node { id } } } }").json()
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 52
    assert cost["actualQueryCost"] == 5  # 2 + 3 orders returned
    assert cost["throttleStatus"]["maximumAvailable"] == 2000
    assert cost["throttleStatus"]["restoreRate"] == 100
    assert 1995 <= cost["throttleStatus"]["currentlyAvailable"] <= 2000
    assert standin.stats()["points_spent"] == 5


def test_a_short_bucket_answers_throttled_and_spends_nothing(standin: StandIn):
    standin.shop(SHOP).bucket.take(1995)
    response = post(standin, CREATE_BASIC, {"input": code_input()})
    body = response.json()
    assert response.status_code == 200
    assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert "data" not in body
    status = body["extensions"]["cost"]["throttleStatus"]
    assert status["currentlyAvailable"] < 10
    assert body["extensions"]["cost"]["requestedQueryCost"] == 10
    stats = standin.stats()
    assert stats["throttled"] == 1
    assert stats["mutations_total"] == 0
    assert standin.discounts(SHOP) == []  # the mutation did not run


def test_a_document_over_the_single_query_limit_is_refused(standin: StandIn):
    body = post(standin, "{ orders(first: 250) { nodes { id fulfillments(first: 10) { id } } } }").json()
    assert body["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"
    assert standin.shop(SHOP).bucket.available == pytest.approx(2000, abs=1)


def test_shops_have_separate_buckets(standin: StandIn):
    standin.shop(SHOP).bucket.take(2000)
    assert post(standin, "{ shop { name } }").json()["errors"][0]["extensions"]["code"] == "THROTTLED"
    other = post(standin, "{ shop { name } }", shop="other.myshopify.com").json()
    assert other["data"]["shop"]["name"] == "Other"


# -- what it answers ------------------------------------------------------------------------


def test_order_answers_the_customer_and_tracking_amends_needs(standin: StandIn):
    order_id = "gid://shopify/Order/5123456789012"
    first = post(standin, ORDER_QUERY, {"id": order_id}).json()["data"]["order"]
    again = post(standin, ORDER_QUERY, {"id": order_id}).json()["data"]["order"]
    assert first == again  # stable per id
    assert first["id"] == order_id and first["name"].startswith("#")
    assert first["customer"]["firstName"] and "@example.com" in first["customer"]["email"]
    assert first["customer"]["emailMarketingConsent"]["marketingState"] in (
        "SUBSCRIBED",
        "NOT_SUBSCRIBED",
        "UNSUBSCRIBED",
    )
    (fulfillment,) = first["fulfillments"]
    assert fulfillment["estimatedDeliveryAt"].endswith("Z") and fulfillment["deliveredAt"] is None
    assert fulfillment["trackingInfo"][0]["number"]


def test_set_order_overrides_and_removes_orders(standin: StandIn):
    state = standin.shop(SHOP)
    state.orders[42] = {"customer": None, "email": None}
    state.orders[43] = None
    body = post(standin, ORDER_QUERY, {"id": "gid://shopify/Order/42"}).json()["data"]["order"]
    assert body["customer"] is None and body["email"] is None and body["name"]
    assert post(standin, ORDER_QUERY, {"id": "gid://shopify/Order/43"}).json()["data"]["order"] is None


def test_a_duplicate_code_answers_taken_and_creates_nothing(standin: StandIn):
    created = post(standin, CREATE_BASIC, {"input": code_input()}).json()["data"]["discountCodeBasicCreate"]
    assert created["userErrors"] == []
    node = created["codeDiscountNode"]
    assert node["codeDiscount"]["codes"]["nodes"] == [{"code": "SORRY-7KQ2-M4XP"}]

    again = post(standin, CREATE_BASIC, {"input": code_input("sorry-7kq2-m4xp")}).json()
    payload = again["data"]["discountCodeBasicCreate"]
    assert payload["codeDiscountNode"] is None
    assert payload["userErrors"] == [
        {
            "field": ["basicCodeDiscount", "code"],
            "message": "Code must be unique. Please try a different code.",
            "code": "TAKEN",
        }
    ]
    # Another shop may use the same code.
    other = post(standin, CREATE_BASIC, {"input": code_input()}, shop="other.myshopify.com").json()
    assert other["data"]["discountCodeBasicCreate"]["userErrors"] == []

    (kept,) = standin.discounts(SHOP)
    assert kept["input"]["context"] == {"customers": {"add": ["gid://shopify/Customer/7000000001"]}}
    stats = standin.stats()
    assert stats["mutations"] == {"discountCodeBasicCreate": 3}
    assert stats["taken"] == 1
    assert stats["shops"][SHOP]["discounts_created"] == 1

    found = post(
        standin,
        "query($c: String!) { codeDiscountNodeByCode(code: $c) { id codeDiscount { "
        "... on DiscountCodeBasic { title usageLimit appliesOncePerCustomer "
        "customerGets { value { ... on DiscountPercentage { percentage } } } "
        "context { ... on DiscountCustomers { customers { id } } } } } } }",
        {"c": "SORRY-7kq2-M4XP"},
    ).json()["data"]["codeDiscountNodeByCode"]
    assert found["id"] == node["id"]
    assert found["codeDiscount"]["usageLimit"] == 1
    assert found["codeDiscount"]["customerGets"]["value"] == {"percentage": 0.15}
    assert found["codeDiscount"]["context"]["customers"] == [{"id": "gid://shopify/Customer/7000000001"}]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"code": ""}, "BLANK"),
        ({"title": None}, "BLANK"),
        ({"customerGets": {"value": {"percentage": 15}, "items": {"all": True}}}, "VALUE_OUTSIDE_RANGE"),
    ],
)
def test_an_invalid_discount_answers_a_user_error(standin: StandIn, change: dict[str, Any], code: str):
    payload = post(standin, CREATE_BASIC, {"input": {**code_input(), **change}}).json()["data"]
    errors = payload["discountCodeBasicCreate"]["userErrors"]
    assert [e["code"] for e in errors] == [code]
    assert standin.discounts(SHOP) == []


def test_free_shipping_tags_and_webhook_subscriptions(standin: StandIn):
    free = post(
        standin,
        "mutation($i: DiscountCodeFreeShippingInput!) { discountCodeFreeShippingCreate("
        "freeShippingCodeDiscount: $i) { codeDiscountNode { codeDiscount { __typename } } "
        "userErrors { code } } }",
        {"i": {"title": "Free shipping", "code": "SHIP-FREE-1", "startsAt": "2026-11-01T00:00:00Z"}},
    ).json()["data"]["discountCodeFreeShippingCreate"]
    assert free == {
        "codeDiscountNode": {"codeDiscount": {"__typename": "DiscountCodeFreeShipping"}},
        "userErrors": [],
    }

    tags = (
        "mutation($id: ID!, $t: [String!]!) { "
        "tagsAdd(id: $id, tags: $t) { node { id } userErrors { message } } }"
    )
    for _ in range(2):
        post(standin, tags, {"id": "gid://shopify/Order/77", "t": ["amends", "late-delivery"]})
    order = post(standin, '{ order(id: "gid://shopify/Order/77") { tags } }').json()["data"]["order"]
    assert order["tags"] == ["amends", "late-delivery"]

    create = (
        "mutation($topic: WebhookSubscriptionTopic!, $sub: WebhookSubscriptionInput!) { "
        "webhookSubscriptionCreate(topic: $topic, webhookSubscription: $sub) { "
        "webhookSubscription { id topic } userErrors { message } } }"
    )
    sub = {"uri": "https://amends.example.test/webhooks", "format": "JSON"}
    made = post(standin, create, {"topic": "ORDERS_CREATE", "sub": sub}).json()["data"]
    assert made["webhookSubscriptionCreate"]["userErrors"] == []
    listed = post(standin, "{ webhookSubscriptions(first: 10) { nodes { topic uri } } }").json()
    assert listed["data"]["webhookSubscriptions"]["nodes"] == [
        {"topic": "ORDERS_CREATE", "uri": "https://amends.example.test/webhooks"}
    ]
    assert standin.stats()["mutations"] == {
        "discountCodeFreeShippingCreate": 1,
        "tagsAdd": 2,
        "webhookSubscriptionCreate": 1,
    }


def test_the_scan_pages_through_every_open_shipment_once(standin: StandIn):
    ids = standin.shop(SHOP).seed_orders(23, late_every=3)
    query = (
        'query($after: String) { orders(first: 10, after: $after, query: "fulfillment_status:shipped") { '
        "pageInfo { hasNextPage endCursor } nodes { id fulfillments(first: 2) { estimatedDeliveryAt } } } }"
    )
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = post(standin, query, {"after": after}).json()["data"]["orders"]
        seen += [order["id"] for order in page["nodes"]]
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert pages == 3
    assert seen == [f"gid://shopify/Order/{n}" for n in ids]


def test_aliases_fragments_and_typename(standin: StandIn):
    body = post(
        standin,
        "query { a: order(id: 1) { ...Bits } b: order(id: 2) { ...Bits } } "
        "fragment Bits on Order { __typename orderName: name customer { ... on Customer { firstName } } }",
    ).json()["data"]
    assert set(body) == {"a", "b"}
    assert body["a"]["__typename"] == "Order"
    assert body["a"]["orderName"].startswith("#")
    assert body["a"]["customer"]["firstName"]


def test_an_unknown_root_field_is_an_error_naming_it(standin: StandIn):
    body = post(standin, "{ shop { name } draftOrders(first: 1) { nodes { id } } }").json()
    assert "data" not in body
    (error,) = body["errors"]
    assert "draftOrders" in error["message"]
    assert error["extensions"]["code"] == "undefinedField"
    stats = standin.stats()
    assert stats["unknown_fields"] == {"QueryRoot.draftOrders": 1}
    assert stats["executed"] == 0


def test_a_field_the_data_lacks_answers_null_and_is_reported(standin: StandIn):
    body = post(standin, "{ order(id: 1) { id riskLevel } }").json()
    assert body["data"]["order"]["riskLevel"] is None
    assert standin.stats()["unknown_fields"] == {"Order.riskLevel": 1}


def test_syntax_errors_are_graphql_errors(standin: StandIn):
    body = post(standin, "{ order(id: 1) { id ").json()
    assert body["errors"][0]["locations"]


# -- faults, latency and tokens ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["500", "502", "503", "429"])
def test_injected_http_failures(standin: StandIn, kind: str):
    standin.configure(retry_after=2)
    standin.fail_next(kind)
    failed = post(standin, CREATE_BASIC, {"input": code_input()})
    assert failed.status_code == int(kind)
    if kind in ("429", "503"):
        assert failed.headers["Retry-After"] == "2"
    assert standin.discounts(SHOP) == []
    assert post(standin, CREATE_BASIC, {"input": code_input()}).status_code == 200
    assert standin.stats()["faults"] == {kind: 1}
    assert len(standin.discounts(SHOP)) == 1


def test_injected_throttled_and_dropped_connections(standin: StandIn):
    standin.fail_next("throttled")
    body = post(standin, "{ shop { name } }").json()
    assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
    standin.fail_next("drop")
    with pytest.raises(requests.ConnectionError):
        post(standin, "{ shop { name } }")
    assert post(standin, "{ shop { name } }").status_code == 200


def test_a_lost_answer_after_the_mutation_ran_then_taken_on_retry(standin: StandIn):
    standin.fail_next("500_after")
    assert post(standin, CREATE_BASIC, {"input": code_input()}).status_code == 500
    assert len(standin.discounts(SHOP)) == 1  # it ran
    retry = post(standin, CREATE_BASIC, {"input": code_input()}).json()
    assert retry["data"]["discountCodeBasicCreate"]["userErrors"][0]["code"] == "TAKEN"


def test_random_faults_hit_about_the_configured_fraction():
    with StandIn(seed=7) as standin:
        standin.configure(faults={"503": 0.25})
        statuses = [post(standin, "{ shop { name } }").status_code for _ in range(200)]
    assert 25 <= statuses.count(503) <= 75
    assert set(statuses) == {200, 503}


def test_unknown_fault_kinds_and_settings_are_refused(standin: StandIn):
    with pytest.raises(ValueError, match="unknown fault kind"):
        standin.fail_next("504")
    with pytest.raises(ValueError, match="unknown setting"):
        standin.configure(latancy=0.1)
    with pytest.raises(ValueError, match="unknown plan"):
        standin.configure(plan="gold")


def test_latency_is_added_to_every_call():
    import time

    with StandIn(latency=0.1) as standin:
        started = time.monotonic()
        post(standin, "{ shop { name } }")
        assert time.monotonic() - started >= 0.1


def test_a_missing_or_unknown_token_is_401(standin: StandIn):
    assert post(standin, "{ shop { name } }", token=None).status_code == 401
    standin.set_tokens(SHOP, {"shpat_good"})
    assert post(standin, "{ shop { name } }", token="shpat_bad").status_code == 401
    assert post(standin, "{ shop { name } }", token="shpat_good").status_code == 200
    assert standin.stats()["unauthorized"] == 2


def test_oauth_grants_issue_expiring_tokens_and_refresh_rotates_them():
    with StandIn(client_id="key", client_secret="secret") as standin:
        url = standin.url + f"/shops/{SHOP}/admin/oauth/access_token"
        wrong = requests.post(url, data={"client_id": "key", "client_secret": "nope", "code": "c"}, timeout=5)
        assert wrong.status_code == 400
        grant = requests.post(
            url,
            data={"client_id": "key", "client_secret": "secret", "code": "abc", "expiring": "1"},
            timeout=5,
        ).json()
        assert grant["expires_in"] == 3600 and grant["refresh_token"].startswith("shprt_")
        first = grant["access_token"]
        assert post(standin, "{ shop { name } }", token=first).status_code == 200
        assert post(standin, "{ shop { name } }", token="shpat_other").status_code == 401

        refreshed = requests.post(
            url,
            json={
                "client_id": "key",
                "client_secret": "secret",
                "grant_type": "refresh_token",
                "refresh_token": grant["refresh_token"],
            },
            timeout=5,
        ).json()
        assert refreshed["access_token"] != first
        assert post(standin, "{ shop { name } }", token=first).status_code == 401
        assert post(standin, "{ shop { name } }", token=refreshed["access_token"]).status_code == 200
        reused = requests.post(
            url,
            data={
                "client_id": "key",
                "client_secret": "secret",
                "grant_type": "refresh_token",
                "refresh_token": grant["refresh_token"],
            },
            timeout=5,
        )
        assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"

        standin.expire_token(SHOP, refreshed["access_token"])
        assert post(standin, "{ shop { name } }", token=refreshed["access_token"]).status_code == 401
        assert standin.stats()["oauth_calls"] == 4


# -- statistics and control over HTTP ---------------------------------------------------------


def test_stats_reset_config_and_seed_over_http(standin: StandIn):
    post(standin, CREATE_BASIC, {"input": code_input()})
    post(standin, ORDER_QUERY, {"id": "gid://shopify/Order/1"})
    stats = requests.get(standin.url + "/_stats", timeout=5).json()
    assert stats["calls"] == 2 and stats["executed"] == 2
    assert stats["root_fields"] == {"discountCodeBasicCreate": 1, "order": 1}
    assert stats["mutations"] == {"discountCodeBasicCreate": 1}
    assert stats["shops"][SHOP]["points_spent"] == stats["points_spent"] > 10
    by_field = stats["points_by_root_field"]
    assert by_field == {"discountCodeBasicCreate": 10, "order": stats["points_spent"] - 10}
    discounts = requests.get(standin.url + "/_discounts", params={"shop": SHOP}, timeout=5).json()
    assert [d["code"] for d in discounts["discounts"]] == ["SORRY-7KQ2-M4XP"]
    assert [c.root_fields for c in standin.mutation_calls("discountCodeBasicCreate", SHOP)] == [
        ["discountCodeBasicCreate"]
    ]

    assert requests.post(standin.url + "/_config", json={"latency": 0.01, "plan": "plus"}, timeout=5).ok
    assert standin.settings.latency == 0.01
    assert (
        post(standin, "{ shop { name } }").json()["extensions"]["cost"]["throttleStatus"]["restoreRate"]
        == 1000
    )
    bad = requests.post(standin.url + "/_config", json={"nonsense": 1}, timeout=5)
    assert bad.status_code == 400
    seeded = requests.post(standin.url + "/_seed", json={"shop": SHOP, "count": 40}, timeout=5).json()
    assert seeded == {"ok": True, "orders": 40}
    assert requests.post(standin.url + "/_fail_next", json={"kind": "503"}, timeout=5).ok
    assert post(standin, "{ shop { name } }").status_code == 503

    assert requests.post(standin.url + "/_reset", timeout=5).ok
    stats = standin.stats()
    assert stats["calls"] == 0 and stats["shops"] == {}
    assert standin.discounts(SHOP) == []


# -- the data is Shopify-shaped ---------------------------------------------------------------


@pytest.fixture(scope="module")
def admin_schema() -> Any:
    from tests.graphql_schema import admin_schema

    return admin_schema()


# Objects the stand-in names generically (payloads, connections) rather than by schema type.
GENERIC = {"Payload", "Connection", "Edge", "PageInfo", "Count", "DiscountCombinesWith", "DeliveryMethod"}
# Fields newer than the 2025-01 schema copy (its README lists the 2025-10 additions;
# defaultEmailAddress is in the later unstable SDL).
NEWER = {
    "Customer.defaultEmailAddress",
    "DiscountCodeBasic.context",
    "DiscountCodeFreeShipping.context",
    "WebhookSubscription.uri",
}


def assert_shopify_shaped(schema: Any, value: Any, where: str) -> int:
    """Every field of every typed object exists on that type in Shopify's schema."""
    checked = 0
    if isinstance(value, list):
        return sum(assert_shopify_shaped(schema, item, where) for item in value)
    if not isinstance(value, dict):
        return 0
    typename = value.get("__typename")
    graphql_type = schema.get_type(typename) if typename and typename not in GENERIC else None
    if typename and typename not in GENERIC:
        assert graphql_type is not None, f"{where}: {typename} is not a Shopify type"
    for name, child in value.items():
        if name == "__typename":
            continue
        if graphql_type is not None and f"{typename}.{name}" not in NEWER:
            assert name in graphql_type.fields, f"{where}: {typename}.{name} is not in Shopify's schema"
            checked += 1
        checked += assert_shopify_shaped(schema, child, f"{where}.{name}")
    return checked


def test_generated_data_uses_shopifys_field_names(admin_schema: Any):
    from plugin.standin import resolvers

    state = ShopState(SHOP, PLANS["standard"])
    state.create_discount("DiscountCodeBasic", "basicCodeDiscount", code_input())
    state.create_webhook("ORDERS_CREATE", {"uri": "https://amends.example.test/webhooks"})
    samples = {
        "order": state.order(5_123_456_789_012),
        "return": resolvers.return_(state, {"id": "gid://shopify/Return/5123456789012"}),
        "refund": resolvers.refund(state, {"id": "gid://shopify/Refund/5123456789012"}),
        "shop": resolvers.shop_(state, {}),
        "installation": resolvers.current_app_installation(state, {}),
        "discount": state.discount_log and state.discounts["sorry-7kq2-m4xp"],
        "webhooks": state.webhooks,
    }
    checked = sum(assert_shopify_shaped(admin_schema, value, name) for name, value in samples.items())
    assert checked > 100


def test_documents_that_validate_against_shopifys_schema_run_on_the_stand_in(
    admin_schema: Any, standin: StandIn
):
    from tests.graphql_schema import assert_valid

    scan = (
        'query($after: String) { orders(first: 50, after: $after, query: "fulfillment_status:shipped") { '
        "pageInfo { hasNextPage endCursor } nodes { id name fulfillments(first: 3) { id status "
        "estimatedDeliveryAt deliveredAt } fulfillmentOrders(first: 2) { nodes { deliveryMethod { "
        "maxDeliveryDateTime } } } } } }"
    )
    for document, variables in ((ORDER_QUERY, {"id": "gid://shopify/Order/5"}), (scan, {"after": None})):
        assert_valid(document, variables)
        body = post(standin, document, variables).json()
        assert "errors" not in body
    assert standin.stats()["unknown_fields"] == {}


def test_authorize_redirects_back_with_a_code_and_a_valid_query_hmac():
    import hashlib
    import hmac
    from urllib.parse import parse_qs, urlsplit

    with StandIn(client_id="key", client_secret="secret") as standin:
        url = standin.url + f"/shops/{SHOP}/admin/oauth/authorize"
        answer = requests.get(
            url,
            params={"client_id": "key", "redirect_uri": "http://127.0.0.1:9/auth/callback", "state": "n1"},
            allow_redirects=False,
            timeout=5,
        )
        assert answer.status_code == 302
        target = urlsplit(answer.headers["Location"])
        assert target.path == "/auth/callback"
        params = {k: v[0] for k, v in parse_qs(target.query).items()}
        given = params.pop("hmac")
        message = "&".join(f"{k}={params[k]}" for k in sorted(params))
        assert hmac.compare_digest(given, hmac.new(b"secret", message.encode(), hashlib.sha256).hexdigest())
        assert params["shop"] == SHOP and params["state"] == "n1" and params["code"]
        refused = requests.get(url, params={"client_id": "other", "redirect_uri": "x"}, timeout=5)
        assert refused.status_code == 400


# -- `amends dev` uses it ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "wanted"),
    [
        ({}, True),
        ({"env": "production"}, False),
        ({"env": "test"}, False),
        ({"shopify_credentials_set": True}, False),
        ({"shopify_admin_base": "https://{shop}.example.test"}, False),
    ],
)
def test_dev_mode_starts_the_stand_in_only_without_shopify_settings(changes: dict[str, Any], wanted: bool):
    from plugin import dev_shopify
    from plugin.config import Config

    config = Config(env="development").with_overrides(**changes)
    assert dev_shopify.wanted(config) is wanted
    started, standin, banner = dev_shopify.start(config)
    try:
        if wanted:
            assert standin is not None
            assert started.shopify_admin_base == standin.admin_base
            assert standin.url in banner
        else:
            assert standin is None and started is config
    finally:
        if standin is not None:
            standin.stop()


def test_dev_mode_sends_the_demo_shops_admin_api_calls_to_the_stand_in(config: Any):
    from plugin import dev_shopify
    from plugin.config import DEV_SHOP
    from plugin.demo import ensure_demo_shop
    from plugin.shopify.client import ShopifyClient
    from tests.services import empty_tables
    from wsgi import create_app

    dev_config = config.with_overrides(
        env="development", shopify_credentials_set=False, shopify_admin_base="https://{shop}"
    )
    dev_config, standin, _ = dev_shopify.start(dev_config)
    assert standin is not None
    app = create_app(dev_config)
    services = app.extensions["amends"]
    try:
        empty_tables(services.db.engine)
        ensure_demo_shop(services)
        data = ShopifyClient(services, DEV_SHOP).graphql(ORDER_QUERY, {"id": "gid://shopify/Order/5100"})
        assert data["order"]["customer"]["email"].endswith("@example.com")
        (call,) = standin.calls
        assert (call.shop, call.root_fields, call.outcome) == (DEV_SHOP, ["order"], "ok")
    finally:
        services.close()
        standin.stop()


# -- it keeps up with the documents Amends sends ----------------------------------------------

SAMPLE_VARIABLES: dict[str, Any] = {
    "ID": "gid://shopify/Order/5123456789012",
    "String": "SORRY-7KQ2-M4XP",
    "Int": 10,
    "Boolean": True,
    "DateTime": "2026-11-01T00:00:00Z",
    "DiscountCodeBasicInput": code_input(),
    "DiscountCodeFreeShippingInput": {
        "title": "Free shipping",
        "code": "SHIP-7KQ2-M4XP",
        "startsAt": "2026-11-01T00:00:00Z",
    },
    "StagedUploadInput": {
        "resource": "BULK_MUTATION_VARIABLES",
        "filename": "variables.jsonl",
        "mimeType": "text/jsonl",
        "httpMethod": "POST",
    },
    "WebhookSubscriptionTopic": "FULFILLMENT_EVENTS_CREATE",
    "WebhookSubscriptionInput": {"uri": "https://amends.example.test/webhooks", "format": "JSON"},
}


def amends_documents() -> list[tuple[str, str]]:
    """Every GraphQL document constant under plugin/shopify/ and actions/, mutations first."""
    import importlib
    import pkgutil

    import actions
    import plugin.shopify

    found = []
    for package in (plugin.shopify, actions):
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for name, value in vars(module).items():
                if (
                    name.isupper()
                    and isinstance(value, str)
                    and value.lstrip().startswith(("query", "mutation"))
                ):
                    found.append((f"{module.__name__}.{name}", value))
    return sorted(found, key=lambda item: not item[1].lstrip().startswith("mutation"))


def sample_variables(document: str) -> dict[str, Any]:
    from graphql import parse
    from graphql.language import ListTypeNode, NamedTypeNode, NonNullTypeNode, OperationDefinitionNode

    values: dict[str, Any] = {}
    for definition in parse(document).definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        for variable in definition.variable_definitions or ():
            node, listed = variable.type, False
            while not isinstance(node, NamedTypeNode):
                listed = listed or isinstance(node, ListTypeNode)
                assert isinstance(node, NonNullTypeNode | ListTypeNode)
                node = node.type
            value = SAMPLE_VARIABLES.get(node.name.value)
            values[variable.variable.name.value] = [value] if listed else value
    return values


def test_the_stand_in_answers_every_document_amends_sends(standin: StandIn):
    documents = amends_documents()
    assert documents, "no GraphQL documents found under plugin/shopify/"
    for name, document in documents:
        body = post(standin, document, sample_variables(document)).json()
        assert "errors" not in body, f"{name}: {body['errors']}"
        assert body["data"], name
    assert standin.stats()["unknown_fields"] == {}


def test_open_shipments_are_on_time_unless_seeded_late(standin: StandIn):
    from datetime import UTC, datetime

    query = "{ orders(first: 50) { nodes { fulfillments(first: 1) { estimatedDeliveryAt } } } }"

    def late_count() -> int:
        nodes = post(standin, query).json()["data"]["orders"]["nodes"]
        now = datetime.now(UTC)
        etas = [datetime.fromisoformat(n["fulfillments"][0]["estimatedDeliveryAt"]) for n in nodes]
        return sum(eta < now for eta in etas)

    assert late_count() == 0  # `amends dev`'s first scan finds nothing to apologise for
    standin.shop(SHOP).seed_orders(10, late_every=2)
    assert late_count() == 5


# -- bulk mutations ---------------------------------------------------------------------------


def test_a_bulk_mutation_runs_each_uploaded_line_and_writes_a_results_file(standin: StandIn):
    """What B3's order tags rely on: stage, upload, run, poll, read the results; ~20 points."""
    from plugin.shopify import bulk
    from plugin.shopify.tags import TAG_ORDER

    standin.configure(bulk_seconds=0.05)
    stage_input = {
        "resource": "BULK_MUTATION_VARIABLES",
        "filename": "variables.jsonl",
        "mimeType": "text/jsonl",
        "httpMethod": "POST",
    }
    staged = post(standin, bulk.STAGE, {"input": [stage_input]}).json()["data"]["stagedUploadsCreate"]
    [target] = staged["stagedTargets"]
    form = {p["name"]: p["value"] for p in target["parameters"]}
    lines = [{"id": f"gid://shopify/Order/{n}", "tags": ["amends"]} for n in (11, 12)] + [
        {"id": "not-an-order", "tags": ["amends"]}
    ]
    body = "".join(json.dumps(line) + "\n" for line in lines)
    upload = requests.post(
        target["url"], data=form, files={"file": ("v.jsonl", body, "text/jsonl")}, timeout=5
    )
    assert upload.status_code == 201

    wrong = post(standin, bulk.RUN, {"mutation": TAG_ORDER, "path": "tmp/never-uploaded"}).json()
    assert wrong["data"]["bulkOperationRunMutation"]["userErrors"][0]["message"].startswith(
        "The staged upload"
    )
    run = post(standin, bulk.RUN, {"mutation": TAG_ORDER, "path": form["key"]}).json()["data"]
    operation = run["bulkOperationRunMutation"]["bulkOperation"]
    assert operation["status"] == "CREATED"
    again = post(standin, bulk.RUN, {"mutation": TAG_ORDER, "path": form["key"]}).json()["data"]
    assert again["bulkOperationRunMutation"]["bulkOperation"] is None  # the file was used

    deadline = time.monotonic() + 5
    while True:
        node = post(standin, bulk.STATUS, {"id": operation["id"]}).json()["data"]["node"]
        if node["status"] == "COMPLETED" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (node["status"], node["objectCount"], node["errorCode"]) == ("COMPLETED", "3", None)
    results = [json.loads(line) for line in requests.get(node["url"], timeout=5).text.splitlines()]
    assert [r["__lineNumber"] for r in results] == [0, 1, 2]
    assert results[0]["data"]["tagsAdd"] == {"node": {"id": "gid://shopify/Order/11"}, "userErrors": []}
    assert results[2]["data"]["tagsAdd"]["userErrors"][0]["message"] == "Invalid global id"
    order = post(standin, '{ order(id: "gid://shopify/Order/12") { tags } }').json()["data"]["order"]
    assert order["tags"] == ["amends"]
    stats = standin.stats()
    assert stats["mutations"]["tagsAdd"] == 3 and stats["points_by_root_field"].get("tagsAdd", 0) == 0
    assert stats["points_by_root_field"]["stagedUploadsCreate"] == 10
    assert stats["points_by_root_field"]["bulkOperationRunMutation"] == 10 * 3  # three calls above


def test_one_bulk_mutation_at_a_time_per_shop(standin: StandIn):
    from plugin.shopify import bulk
    from plugin.shopify.tags import TAG_ORDER

    standin.configure(bulk_seconds=5)
    keys = []
    for _ in range(2):
        staged = post(
            standin,
            bulk.STAGE,
            {
                "input": [
                    {
                        "resource": "BULK_MUTATION_VARIABLES",
                        "filename": "v.jsonl",
                        "mimeType": "text/jsonl",
                        "httpMethod": "POST",
                    }
                ]
            },
        ).json()["data"]["stagedUploadsCreate"]
        [target] = staged["stagedTargets"]
        form = {p["name"]: p["value"] for p in target["parameters"]}
        requests.post(target["url"], data=form, files={"file": ("v.jsonl", b"{}\n")}, timeout=5)
        keys.append(form["key"])
    first = post(standin, bulk.RUN, {"mutation": TAG_ORDER, "path": keys[0]}).json()["data"]
    assert first["bulkOperationRunMutation"]["userErrors"] == []
    second = post(standin, bulk.RUN, {"mutation": TAG_ORDER, "path": keys[1]}).json()["data"]
    [error] = second["bulkOperationRunMutation"]["userErrors"]
    assert "already in progress" in error["message"]
