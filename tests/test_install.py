"""The authorization-code install, the custom-app command, per-shop webhook subscriptions and
shopify.app.toml. Shopify's token endpoint and Admin API are faked with `responses` and
assert what Shopify would receive; everything else is real."""

from __future__ import annotations

import base64
import time
import tomllib
from datetime import timedelta
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from actions.topics import COMPLIANCE_TOPICS, HANDLERS, skip_reason
from plugin.auth import query, state
from plugin.config import PROJECT_ROOT, SHOPIFY_API_VERSION
from plugin.db import utcnow
from plugin.models import Incident, Shop
from plugin.shopify.webhooks import FILTERS, TOPICS
from tests.auth_fakes import SCOPES, AdminApi, TokenEndpoint, signed_query
from tests.conftest import API_KEY, API_SECRET, OLD_SECRET, make_config
from tests.factories import SHOP, make_shop

APP_URL = "https://amends.example.test"
HOST = base64.urlsafe_b64encode(b"admin.shopify.com/store/calm-coffee").decode().rstrip("=")


def start_install(client, shop=SHOP):
    response = client.get("/auth/install", query_string={"shop": shop})
    assert response.status_code == 302, response.get_data(as_text=True)
    location = urlsplit(response.headers["Location"])
    return response, location, {k: v[0] for k, v in parse_qs(location.query).items()}


def callback_query(
    nonce: str, shop: str = SHOP, secret: str = API_SECRET, **overrides: str
) -> dict[str, str]:
    params = {
        "code": "0907a61c0c8d55e99db179b68161bc00",
        "host": HOST,
        "shop": shop,
        "state": nonce,
        "timestamp": str(int(time.time())),
    }
    params.update(overrides)
    return signed_query(params, secret)


def shops(services) -> list[Shop]:
    with services.db.session() as session:
        return list(session.scalars(select(Shop)))


# -- /auth/install ------------------------------------------------------------------------


def test_install_redirects_to_shopify_with_a_state_cookie(client):
    response, location, params = start_install(client)
    assert (location.scheme, location.netloc, location.path) == ("https", SHOP, "/admin/oauth/authorize")
    assert params["client_id"] == API_KEY
    assert params["scope"] == SCOPES
    assert params["redirect_uri"] == f"{APP_URL}/auth/callback"
    assert len(params["state"]) >= 32

    cookie = SimpleCookie(response.headers["Set-Cookie"])[state.COOKIE]
    assert cookie["path"] == "/auth/callback"
    assert cookie["httponly"] and cookie["secure"]
    assert cookie["samesite"] == "Lax"
    assert cookie["max-age"] == "600"
    assert params["state"] not in cookie.value  # signed and serialised, not the bare nonce
    # OAuth runs in the top window: nobody may frame it.
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none';"


def test_install_accepts_an_uppercase_domain(client):
    _, location, _ = start_install(client, "Calm-Coffee.MyShopify.com")
    assert location.netloc == SHOP


@pytest.mark.parametrize(
    "shop",
    [
        "evil.com",
        "shop.myshopify.com.evil.com",
        "-shop.myshopify.com",
        "shop.myshopify.com/evil",
        "https://calm-coffee.myshopify.com",
        "calm coffee.myshopify.com",
        "calm_coffee.myshopify.com",
        "myshopify.com",
        ".myshopify.com",
        "calm-coffee.myshopify.com%00.evil.com",
    ],
)
def test_install_refuses_what_is_not_a_shop(client, shop):
    response = client.get("/auth/install", query_string={"shop": shop})
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "is not a Shopify store address" in page
    assert "your-store.myshopify.com" in page
    assert "Set-Cookie" not in response.headers
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none';"


def test_install_without_a_shop_asks_for_one(client):
    response = client.get("/auth/install")
    assert response.status_code == 400
    assert "Enter your store" in response.get_data(as_text=True)


# -- the whole install --------------------------------------------------------------------


def test_full_install_stores_an_expiring_pair_and_sends_the_merchant_into_the_app(client, services, shopify):
    token_endpoint = TokenEndpoint(shopify)
    admin = AdminApi(shopify, accept_any_token=True)
    _, _, params = start_install(client)

    response = client.get("/auth/callback", query_string=callback_query(params["state"]))

    assert response.status_code == 302, response.get_data(as_text=True)
    assert response.headers["Location"] == f"https://admin.shopify.com/store/calm-coffee/apps/{API_KEY}"
    assert "amends_oauth_state=;" in response.headers["Set-Cookie"]  # the nonce is spent
    assert token_endpoint.forms == [
        {
            "client_id": API_KEY,
            "client_secret": API_SECRET,
            "code": "0907a61c0c8d55e99db179b68161bc00",
            "expiring": "1",
        }
    ]
    granted = token_endpoint.granted[0]
    (shop,) = shops(services)
    assert shop.domain == SHOP and shop.installed and shop.installed_via == "oauth"
    assert services.cipher.decrypt(shop.access_token) == granted["access_token"]
    assert services.cipher.decrypt(shop.refresh_token) == granted["refresh_token"]
    assert abs((shop.access_token_expires_at - utcnow()) - timedelta(hours=1)) < timedelta(seconds=30)
    assert abs((shop.refresh_token_expires_at - utcnow()) - timedelta(days=90)) < timedelta(seconds=30)
    assert shop.scopes == SCOPES
    assert shop.test_mode, "a new shop starts in test mode"

    # The part that needs Shopify runs after the request: name and currency are read then.
    assert services.queue.wait_idle(10)
    (shop,) = shops(services)
    assert (shop.name, shop.currency) == ("Calm Coffee", "EUR")
    assert admin.operations == ["AmendsShopDetails"], "no webhook registration: the TOML does it"
    assert admin.seen_tokens == [granted["access_token"]]


def test_the_callback_cannot_be_replayed(client, services, shopify):
    token_endpoint = TokenEndpoint(shopify)
    AdminApi(shopify, accept_any_token=True)
    _, _, params = start_install(client)
    signed = callback_query(params["state"])
    assert client.get("/auth/callback", query_string=signed).status_code == 302
    services.queue.wait_idle(10)

    again = client.get("/auth/callback", query_string=signed)
    assert again.status_code == 401  # the state cookie was cleared with the first answer
    assert token_endpoint.calls == 1


# -- every way a callback is refused ------------------------------------------------------


def _refusal_cases():
    def bad_hmac(nonce):
        return {**callback_query(nonce), "hmac": "0" * 64}

    def other_secret(nonce):
        return callback_query(nonce, secret="not-the-secret")

    def tampered(nonce):
        return {**callback_query(nonce), "code": "another-code"}

    def stale(nonce):
        return callback_query(nonce, timestamp=str(int(time.time()) - 3600))

    def future(nonce):
        return callback_query(nonce, timestamp=str(int(time.time()) + 3600))

    def not_a_number(nonce):
        return callback_query(nonce, timestamp="yesterday")

    def wrong_state(nonce):
        return callback_query("a-nonce-this-browser-never-saw")

    def other_shop(nonce):
        return callback_query(nonce, shop="other-store.myshopify.com")

    def evil(nonce):
        return callback_query(nonce, shop="evil.com")

    def suffix(nonce):
        return callback_query(nonce, shop="shop.myshopify.com.evil.com")

    def hyphen(nonce):
        return callback_query(nonce, shop="-shop.myshopify.com")

    cases = [
        ("bad hmac", bad_hmac, 401, "signature"),
        ("signed with another secret", other_secret, 401, "signature"),
        ("a parameter changed after signing", tampered, 401, "signature"),
        ("stale timestamp", stale, 401, "too old"),
        ("timestamp in the future", future, 401, "too old"),
        ("timestamp not a number", not_a_number, 401, "too old"),
        ("wrong state", wrong_state, 401, "state"),
        ("state cookie for another shop", other_shop, 401, "state"),
        ("evil.com", evil, 400, "not a Shopify store"),
        ("shop.myshopify.com.evil.com", suffix, 400, "not a Shopify store"),
        ("-shop.myshopify.com", hyphen, 400, "not a Shopify store"),
    ]
    for name in ("code", "shop", "state", "timestamp", "hmac"):

        def missing(nonce, name=name):
            params = callback_query(nonce)
            params.pop(name)
            return (
                params if name == "hmac" else signed_query({k: v for k, v in params.items() if k != "hmac"})
            )

        cases.append((f"missing {name}", missing, 400, "incomplete"))
    return cases


@pytest.mark.parametrize(
    ("build", "status", "says"),
    [pytest.param(b, s, w, id=n) for n, b, s, w in _refusal_cases()],
)
def test_callback_refusals_store_nothing_and_ask_shopify_nothing(
    client, services, shopify, build, status, says
):
    token_endpoint = TokenEndpoint(shopify)
    _, _, params = start_install(client)

    response = client.get("/auth/callback", query_string=build(params["state"]))

    assert response.status_code == status
    assert response.mimetype == "text/html"
    assert says in response.get_data(as_text=True)
    assert token_endpoint.calls == 0
    assert shops(services) == []


def test_callback_without_the_state_cookie_is_refused(client, services, shopify):
    token_endpoint = TokenEndpoint(shopify)
    _, _, params = start_install(client)
    client.delete_cookie(state.COOKIE, path="/auth/callback")

    response = client.get("/auth/callback", query_string=callback_query(params["state"]))

    assert response.status_code == 401
    assert "not started from this browser" in response.get_data(as_text=True)
    assert token_endpoint.calls == 0 and shops(services) == []


def test_a_forged_state_cookie_is_refused(client, services, shopify):
    token_endpoint = TokenEndpoint(shopify)
    client.set_cookie(state.COOKIE, "forged", path="/auth/callback")
    response = client.get("/auth/callback", query_string=callback_query("forged"))
    assert response.status_code == 401
    assert token_endpoint.calls == 0 and shops(services) == []


def test_callback_signed_with_the_old_secret_during_rotation_is_accepted(client, services, shopify):
    TokenEndpoint(shopify)
    AdminApi(shopify, accept_any_token=True)
    _, _, params = start_install(client)
    response = client.get("/auth/callback", query_string=callback_query(params["state"], secret=OLD_SECRET))
    assert response.status_code == 302
    services.queue.wait_idle(10)


@pytest.mark.parametrize(
    ("answer", "status", "says"),
    [
        ((400, {"error": "invalid_request", "error_description": "code was already used"}), 401, "refused"),
        ((503, {"errors": "unavailable"}), 502, "could not be reached"),
    ],
)
def test_shopify_refusing_the_code_stores_nothing(client, services, shopify, answer, status, says):
    token_endpoint = TokenEndpoint(shopify, answers=[answer])
    _, _, params = start_install(client)
    response = client.get("/auth/callback", query_string=callback_query(params["state"]))
    assert response.status_code == status
    assert says in response.get_data(as_text=True)
    assert token_endpoint.calls == 1
    assert shops(services) == []


def test_refusals_are_logged_without_secrets(client, shopify, caplog):
    TokenEndpoint(shopify, answers=[(400, {"error": "invalid_request"})])
    _, _, params = start_install(client)
    signed = callback_query(params["state"])
    with caplog.at_level("DEBUG"):
        client.get("/auth/callback", query_string={**signed, "hmac": "f" * 64})
        client.get("/auth/callback", query_string=signed)
    text = caplog.text
    assert "bad_hmac" in text and "refused" in text
    for secret in (signed["code"], signed["hmac"], params["state"], API_SECRET):
        assert secret not in text


# -- query signatures ---------------------------------------------------------------------


def test_query_signature_matches_shopifys_documented_example():
    args = MultiDict(
        [
            ("code", "0907a61c0c8d55e99db179b68161bc00"),
            ("shop", "some-shop.myshopify.com"),
            ("state", "0.6784241404160823"),
            ("timestamp", "1337178173"),
            ("hmac", "700e2dadb827fcc8609e9d5ce208b2e9cdaab9df07390d2cbca10d7c328fc4bf"),
        ]
    )
    assert query.signature(args, "hush") == args["hmac"]
    assert query.verify(args, ["hush"], now=1337178173 + 5) == query.Signed("some-shop.myshopify.com")
    assert query.verify(args, ["wrong"], now=1337178173) == query.Refused("bad_hmac")


def test_query_signature_agrees_with_the_shopifyapi_library():
    import shopify

    params = {"shop": SHOP, "timestamp": "1700000000", "host": HOST, "ids[]": ["1", "2"], "note": "a&b=c%"}
    args = MultiDict(
        [(k, v) for k, values in params.items() for v in (values if isinstance(values, list) else [values])]
    )
    shopify.Session.secret = API_SECRET
    try:
        assert query.signature(args, API_SECRET) == shopify.Session.calculate_hmac(params)
    finally:
        shopify.Session.secret = None


# -- per-shop webhook subscriptions -------------------------------------------------------


def test_install_with_per_shop_registration_subscribes_once_and_reinstall_adds_no_duplicates(
    database_url, shopify
):
    from tests.services import empty_tables
    from wsgi import create_app

    app = create_app(make_config(database_url, register_webhooks=True))
    services = app.extensions["amends"]
    empty_tables(services.db.engine)
    client = app.test_client()
    try:
        TokenEndpoint(shopify)
        admin = AdminApi(shopify, accept_any_token=True)
        admin.subscriptions.append(
            {
                "id": "gid://shopify/WebhookSubscription/900",
                "topic": "REFUNDS_CREATE",
                "uri": "https://old.example/webhooks",
            }
        )
        # Ours, from before filters: updated in place rather than duplicated.
        admin.subscriptions.append(
            {
                "id": "gid://shopify/WebhookSubscription/901",
                "topic": "FULFILLMENT_EVENTS_CREATE",
                "uri": f"{APP_URL}/webhooks",
                "filter": None,
            }
        )
        for _ in range(2):  # install, then install again
            _, _, params = start_install(client)
            assert (
                client.get("/auth/callback", query_string=callback_query(params["state"])).status_code == 302
            )
            assert services.queue.wait_idle(10)

        by_topic = {}
        for node in admin.subscriptions:
            by_topic.setdefault(node["topic"], []).append(node["uri"])
        assert by_topic == {t.upper().replace("/", "_"): [f"{APP_URL}/webhooks"] for t in TOPICS}
        filters = {node["topic"]: node.get("filter") for node in admin.subscriptions}
        assert filters == {t.upper().replace("/", "_"): FILTERS.get(t) for t in TOPICS}
        assert admin.operations.count("AmendsWebhookSubscriptionCreate") == len(TOPICS) - 2
        assert admin.operations.count("AmendsWebhookSubscriptionUpdate") == 2  # old address, no filter
        assert admin.operations.count("AmendsWebhookSubscriptions") == 2
        (shop,) = shops(services)
        assert shop.webhooks_registered_at is not None
    finally:
        services.close()


def test_subscription_user_errors_fail_the_job_loudly(services, shopify):
    from plugin.auth.completion import complete_install
    from plugin.errors import ShopifyUserError

    shop = make_shop(services, installed_via="custom_app")
    admin = AdminApi(shopify, accept_any_token=True)
    admin.handlers["AmendsWebhookSubscriptionCreate"] = lambda v: {
        "webhookSubscriptionCreate": {
            "webhookSubscription": None,
            "userErrors": [{"field": ["webhookSubscription", "uri"], "message": "Address is invalid"}],
        }
    }
    with pytest.raises(ShopifyUserError, match="Address is invalid"):
        complete_install(services, shop.id)
    assert shops(services)[0].webhooks_registered_at is None


# -- shopify.app.toml ---------------------------------------------------------------------


def test_shopify_app_toml_matches_what_amends_handles(config):
    toml = tomllib.loads((PROJECT_ROOT / "shopify.app.toml").read_text())
    assert toml["embedded"] is True
    assert toml["client_id"] and toml["application_url"].startswith("https://")
    assert toml["auth"]["redirect_urls"] == [toml["application_url"].rstrip("/") + "/auth/callback"]
    assert toml["access_scopes"]["scopes"].split(",") == list(config.scopes)
    webhooks = toml["webhooks"]
    assert webhooks["api_version"] == SHOPIFY_API_VERSION
    subscriptions = webhooks["subscriptions"]
    assert all(s["uri"] == "/webhooks" for s in subscriptions)
    topics = [t for s in subscriptions for t in s.get("topics", [])]
    compliance = [t for s in subscriptions for t in s.get("compliance_topics", [])]
    assert sorted(topics) == sorted(TOPICS) == sorted(set(HANDLERS) - set(COMPLIANCE_TOPICS))
    assert len(topics) == len(set(topics))
    assert sorted(compliance) == sorted(COMPLIANCE_TOPICS)
    filtered = {t: s["filter"] for s in subscriptions if "filter" in s for t in s["topics"]}
    assert filtered == FILTERS


# Every status Shopify gives a fulfillment event or a fulfillment's shipment.
SHIPMENT_STATUSES = (
    "attempted_delivery",
    "carrier_picked_up",
    "confirmed",
    "delayed",
    "delivered",
    "failure",
    "in_transit",
    "label_printed",
    "label_purchased",
    "out_for_delivery",
    "picked_up",
    "ready_for_pickup",
)


@pytest.mark.parametrize(
    ("topic", "field"), [("fulfillment_events/create", "status"), ("fulfillments/update", "shipment_status")]
)
def test_subscription_filters_let_through_exactly_what_amends_acts_on(topic, field):
    # The filters are "field:value OR field:value …": what Shopify sends must be what
    # skip_reason keeps, or Amends would miss incidents (or receive what it ignores).
    terms = FILTERS[topic].split(" OR ")
    sent = {term.removeprefix(f"{field}:") for term in terms}
    assert all(term.startswith(f"{field}:") for term in terms)
    needed = {status for status in SHIPMENT_STATUSES if skip_reason(topic, {field: status}) is None}
    assert sent == needed


# -- reinstall ----------------------------------------------------------------------------


def test_reinstall_after_uninstall_restores_the_shop_with_its_incidents(client, services, shopify):
    TokenEndpoint(shopify)
    AdminApi(shopify, accept_any_token=True)
    shop = make_shop(services, uninstalled_at=utcnow(), access_token=None)
    with services.db.session() as session:
        session.add(Incident(shop_id=shop.id, kind="refund", order_id=1001, open_key="1001:refund"))

    _, _, params = start_install(client)
    assert client.get("/auth/callback", query_string=callback_query(params["state"])).status_code == 302
    services.queue.wait_idle(10)

    (back,) = shops(services)
    assert back.id == shop.id and back.installed and back.access_token is not None
    with services.db.session() as session:
        assert session.scalar(select(sa.func.count()).select_from(Incident)) == 1


# -- custom app ---------------------------------------------------------------------------


def cli_env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "AMENDS_ENV": "test",
        "DATABASE_URL": database_url,
        "SHOPIFY_API_KEY": API_KEY,
        "SHOPIFY_API_SECRET": API_SECRET,
        "SHOPIFY_APP_URL": APP_URL,
        "SECRET_KEY": "test-secret-key-0123456789abcdef0123456789",
        "REDIS_URL": "",
        "SMTP_URL": "",
        **extra,
    }


def test_add_shop_installs_a_custom_app_with_its_token_and_subscribes_it(services, database_url, shopify):
    from plugin.cli import cli

    admin = AdminApi(shopify, tokens={"shpat_custom_app_token"})
    result = CliRunner().invoke(
        cli,
        ["add-shop", "--shop", "Calm-Coffee.myshopify.com", "--token", "shpat_custom_app_token"],
        env=cli_env(database_url),
    )
    assert result.exit_code == 0, result.output
    assert "calm-coffee.myshopify.com is installed" in result.output
    assert f"webhooks: {len(TOPICS)} created" in result.output
    (shop,) = shops(services)
    assert shop.installed and shop.installed_via == "custom_app"
    assert services.cipher.decrypt(shop.access_token) == "shpat_custom_app_token"
    assert shop.access_token_expires_at is None and shop.refresh_token is None
    assert shop.scopes == SCOPES and shop.name == "Calm Coffee"
    assert len(admin.subscriptions) == len(TOPICS)

    again = CliRunner().invoke(
        cli, ["add-shop", "--shop", SHOP, "--token", "shpat_custom_app_token"], env=cli_env(database_url)
    )
    assert again.exit_code == 0, again.output
    assert f"0 created, 0 updated, {len(TOPICS)} already there" in again.output
    assert len(admin.subscriptions) == len(TOPICS)


def test_add_shop_with_a_refused_token_stores_nothing(services, database_url, shopify):
    from plugin.cli import cli

    AdminApi(shopify, tokens={"shpat_the_right_one"})
    result = CliRunner().invoke(
        cli, ["add-shop", "--shop", SHOP, "--token", "shpat_a_wrong_one"], env=cli_env(database_url)
    )
    assert result.exit_code == 1
    assert "refused" in result.output
    assert shops(services) == []


def test_add_shop_refuses_a_bad_domain(services, database_url, shopify):
    from plugin.cli import cli

    result = CliRunner().invoke(
        cli, ["add-shop", "--shop", "evil.com", "--token", "x"], env=cli_env(database_url)
    )
    assert result.exit_code == 1
    assert "not a shop domain" in result.output
    assert shops(services) == []


def test_authorize_url_uses_the_configured_admin_base(config):
    from plugin.auth.install import authorize_url

    local = config.with_overrides(shopify_admin_base="http://127.0.0.1:9999/shops/{shop}")
    url = authorize_url(local, SHOP, "nonce")
    assert url.startswith(f"http://127.0.0.1:9999/shops/{SHOP}/admin/oauth/authorize?")
    assert "state=nonce" in url and urlencode({"redirect_uri": f"{APP_URL}/auth/callback"}) in url


# -- against a Shopify-compatible endpoint ------------------------------------------------


def test_install_refresh_and_token_exchange_against_the_shopify_stand_in(database_url):
    """Real HTTP end to end: the authorize redirect, the callback Shopify's side signs, the
    code grant, webhook registration, a token retired by Shopify, a stored expiry passed,
    and a Shopify-managed install by token exchange."""
    import requests

    from plugin.auth.exchange import ensure_offline_token
    from plugin.shopify.client import ShopifyClient
    from plugin.shopify.shop_details import SHOP_DETAILS_QUERY
    from plugin.standin import StandIn
    from tests.auth_fakes import session_token
    from tests.services import empty_tables
    from wsgi import create_app

    with StandIn(client_id=API_KEY, client_secret=API_SECRET) as standin:
        config = make_config(database_url, shopify_admin_base=standin.admin_base, register_webhooks=True)
        app = create_app(config)
        services = app.extensions["amends"]
        empty_tables(services.db.engine)
        try:
            client = app.test_client()
            started = client.get("/auth/install", query_string={"shop": SHOP})
            approved = requests.get(started.headers["Location"], allow_redirects=False, timeout=10)
            assert approved.status_code == 302
            back = urlsplit(approved.headers["Location"])
            assert f"{back.scheme}://{back.netloc}{back.path}" == f"{APP_URL}/auth/callback"
            assert client.get(f"/auth/callback?{back.query}").status_code == 302
            assert services.queue.wait_idle(15)

            (shop,) = shops(services)
            assert shop.installed and shop.refresh_token is not None and shop.name
            assert standin.stats()["shops"][SHOP]["webhook_subscriptions"] == len(TOPICS)
            first = services.cipher.decrypt(shop.access_token)

            standin.expire_token(SHOP, first)  # Shopify no longer takes it: 401, refresh, retry
            assert ShopifyClient(services, SHOP).graphql(SHOP_DETAILS_QUERY)["shop"]["name"]
            second = services.cipher.decrypt(shops(services)[0].access_token)
            assert second != first

            with services.db.session() as session:  # the stored expiry has passed: refreshed first
                session.execute(
                    sa.update(Shop).values(access_token_expires_at=utcnow() - timedelta(minutes=1))
                )
            grants_before = standin.counts["oauth"]
            assert ShopifyClient(services, SHOP).graphql(SHOP_DETAILS_QUERY)["shop"]["name"]
            assert standin.counts["oauth"] == grants_before + 1
            assert services.cipher.decrypt(shops(services)[0].access_token) not in (first, second)

            managed = "managed-store.myshopify.com"
            installed = ensure_offline_token(services, managed, session_token(managed))
            assert installed.installed and installed.installed_via == "token_exchange"
            assert ShopifyClient(services, managed).graphql(SHOP_DETAILS_QUERY)["shop"]["name"]
            assert services.queue.wait_idle(15)
        finally:
            services.close()
