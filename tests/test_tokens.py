"""Expiring offline tokens: refreshed before they expire and after a 401, one refresh request
however many workers need it (real threads, real Redis or the database claim), permanent
failures marked for re-authentication, tokens encrypted at rest and key rotation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import select

from plugin import tokens
from plugin.crypto import TokenCipher
from plugin.db import utcnow
from plugin.errors import ShopifyAuthError, ShopifyRetryableError, ShopNotFoundError
from plugin.models import Shop
from plugin.services import Services
from plugin.shopify.client import ShopifyClient
from plugin.shopify.shop_details import fetch_shop_details
from tests.auth_fakes import AdminApi, TokenEndpoint
from tests.conftest import API_KEY, API_SECRET, make_config
from tests.factories import SHOP, make_shop
from tests.services import empty_tables
from wsgi import create_app

OLD = "shpat_old_access"
REFRESH = "shprt_old_refresh"


def load(services: Services, domain: str = SHOP) -> Shop:
    with services.db.session() as session:
        shop = session.scalar(select(Shop).where(Shop.domain == domain))
        assert shop is not None
        return shop


def expiring_shop(services: Services, expires_in: timedelta = timedelta(minutes=2), **fields) -> Shop:
    return make_shop(services, token=OLD, expires_in=expires_in, refresh_token=REFRESH, **fields)


@pytest.fixture(params=["database", "redis"])
def lock_services(request, database_url: str) -> Iterator[Services]:
    """The services with the row-claim lock (no Redis) and with the Redis lock."""
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    app: Flask = create_app(make_config(database_url, redis_url=redis_url))
    services: Services = app.extensions["amends"]
    empty_tables(services.db.engine)
    assert (services.redis is not None) == (request.param == "redis")
    yield services
    services.close()


# -- before expiry ------------------------------------------------------------------------


def test_a_fresh_token_is_used_as_it_is(services, shopify):
    endpoint = TokenEndpoint(shopify)
    make_shop(services, token=OLD, expires_in=timedelta(minutes=30), refresh_token=REFRESH)
    assert tokens.access_token(services, SHOP) == OLD
    assert endpoint.calls == 0


def test_a_token_expiring_within_minutes_is_refreshed_first(services, shopify):
    endpoint = TokenEndpoint(shopify)
    expiring_shop(services)

    token = tokens.access_token(services, SHOP)

    assert endpoint.forms == [
        {
            "client_id": API_KEY,
            "client_secret": API_SECRET,
            "grant_type": "refresh_token",
            "refresh_token": REFRESH,
            "expiring": "1",
        }
    ]
    granted = endpoint.granted[0]
    assert token == granted["access_token"]
    shop = load(services)
    assert services.cipher.decrypt(shop.access_token) == granted["access_token"]
    assert services.cipher.decrypt(shop.refresh_token) == granted["refresh_token"]  # rotated
    assert shop.access_token_expires_at > utcnow() + timedelta(minutes=55)
    assert shop.refresh_token_expires_at > utcnow() + timedelta(days=89)
    assert tokens.access_token(services, SHOP) == token and endpoint.calls == 1


def test_an_already_expired_token_is_refreshed(services, shopify):
    endpoint = TokenEndpoint(shopify)
    expiring_shop(services, expires_in=timedelta(minutes=-10))
    assert tokens.access_token(services, SHOP) == endpoint.granted[0]["access_token"]


def test_the_old_refresh_token_is_kept_when_shopify_sends_none(services, shopify):
    answer = {"access_token": "shpat_new", "expires_in": 3600, "scope": "read_orders"}
    TokenEndpoint(shopify, answers=[(200, answer)])
    expiring_shop(services)
    assert tokens.access_token(services, SHOP) == "shpat_new"
    shop = load(services)
    assert services.cipher.decrypt(shop.refresh_token) == REFRESH
    assert shop.scopes == "read_orders"


def accepts_new_tokens(admin: AdminApi):
    return lambda answer: admin.tokens.add(answer["access_token"])


def test_api_calls_keep_working_past_the_tokens_expiry(services, shopify):
    admin = AdminApi(shopify, tokens={OLD})
    endpoint = TokenEndpoint(shopify, on_grant=accepts_new_tokens(admin))
    expiring_shop(services, expires_in=timedelta(minutes=30))
    client = ShopifyClient(services, SHOP)
    fetch_shop_details(client)
    # An hour later, Shopify no longer takes the old token.
    with services.db.session() as session:
        session.execute(sa.update(Shop).values(access_token_expires_at=utcnow() - timedelta(minutes=1)))
    admin.tokens.discard(OLD)

    details = fetch_shop_details(client)

    assert details.name == "Calm Coffee"
    assert endpoint.calls == 1
    assert admin.seen_tokens == [OLD, endpoint.granted[0]["access_token"]]


# -- after a 401 --------------------------------------------------------------------------


def test_a_401_refreshes_once_and_retries_once(services, shopify):
    admin = AdminApi(shopify)
    endpoint = TokenEndpoint(shopify, on_grant=accepts_new_tokens(admin))
    make_shop(services, token=OLD, expires_in=timedelta(minutes=50), refresh_token=REFRESH)  # revoked early

    details = fetch_shop_details(ShopifyClient(services, SHOP))

    assert details.currency == "EUR"
    assert endpoint.calls == 1
    assert endpoint.forms[0]["grant_type"] == "refresh_token"
    assert admin.seen_tokens == [OLD, endpoint.granted[0]["access_token"]]


def test_a_second_401_after_the_refresh_marks_the_shop_for_reauthentication(services, shopify):
    endpoint = TokenEndpoint(shopify)
    admin = AdminApi(shopify)  # takes no token at all
    make_shop(services, token=OLD, expires_in=timedelta(minutes=50), refresh_token=REFRESH)

    with pytest.raises(ShopifyAuthError):
        fetch_shop_details(ShopifyClient(services, SHOP))

    assert endpoint.calls == 1, "one refresh, not a loop"
    assert len(admin.seen_tokens) == 2
    assert "refused" in load(services).reauth_reason
    with pytest.raises(ShopifyAuthError):
        fetch_shop_details(ShopifyClient(services, SHOP))
    assert endpoint.calls == 1 and len(admin.seen_tokens) == 2, "nothing more is asked of Shopify"


def test_a_custom_app_token_refused_cannot_be_refreshed(services, shopify):
    endpoint = TokenEndpoint(shopify)
    AdminApi(shopify)
    make_shop(services, token="shpat_custom", installed_via="custom_app")
    with pytest.raises(ShopifyAuthError, match="cannot be refreshed"):
        fetch_shop_details(ShopifyClient(services, SHOP))
    assert endpoint.calls == 0
    assert load(services).reauth_reason


# -- permanent and passing failures -------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        (400, {"error": "invalid_grant", "error_description": "refresh token is invalid"}),
        (401, {"error": "invalid_client"}),
    ],
)
def test_a_refused_refresh_marks_the_shop_instead_of_looping(services, shopify, answer):
    endpoint = TokenEndpoint(shopify, answers=[answer])
    expiring_shop(services)

    with pytest.raises(ShopifyAuthError):
        tokens.access_token(services, SHOP)
    shop = load(services)
    assert answer[1]["error"] in shop.reauth_reason
    assert services.cipher.decrypt(shop.access_token) == OLD  # nothing half-stored

    for _ in range(3):
        with pytest.raises(ShopifyAuthError):
            tokens.access_token(services, SHOP)
    assert endpoint.calls == 1


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_passing_failure_is_retried_later_and_changes_nothing(services, shopify, status):
    endpoint = TokenEndpoint(shopify, answers=[(status, {"errors": "busy"})])
    expiring_shop(services)
    with pytest.raises(ShopifyRetryableError):
        tokens.access_token(services, SHOP)
    shop = load(services)
    assert shop.reauth_reason is None
    assert services.cipher.decrypt(shop.access_token) == OLD
    assert tokens.access_token(services, SHOP) == endpoint.granted[0]["access_token"]
    assert endpoint.calls == 2


def test_an_unreachable_token_endpoint_is_retryable(services, shopify):
    import requests

    shopify.add("POST", f"https://{SHOP}/admin/oauth/access_token", body=requests.ConnectionError("down"))
    expiring_shop(services)
    with pytest.raises(ShopifyRetryableError):
        tokens.access_token(services, SHOP)
    assert load(services).reauth_reason is None


def test_an_expired_refresh_token_needs_reauthentication_without_asking(services, shopify):
    endpoint = TokenEndpoint(shopify)
    expiring_shop(services, refresh_token_expires_at=utcnow() - timedelta(days=1))
    with pytest.raises(ShopifyAuthError, match="refresh token has expired"):
        tokens.access_token(services, SHOP)
    assert endpoint.calls == 0 and load(services).reauth_reason


def test_an_uninstalled_shop_has_no_token(services, shopify):
    make_shop(services, uninstalled_at=utcnow())
    with pytest.raises(ShopNotFoundError):
        tokens.access_token(services, SHOP)


# -- concurrency: one refresh request for every worker ------------------------------------


def run_together(count: int, work) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def worker(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work()
        except Exception as error:  # collected and asserted on by the test
            results[index] = error

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_workers_refreshing_at_once_send_one_request(lock_services, shopify):
    services = lock_services
    endpoint = TokenEndpoint(shopify, delay=0.4)
    expiring_shop(services)

    results = run_together(6, lambda: tokens.access_token(services, SHOP))

    assert endpoint.calls == 1, endpoint.forms
    assert results == [endpoint.granted[0]["access_token"]] * 6
    shop = load(services)
    assert services.cipher.decrypt(shop.access_token) == endpoint.granted[0]["access_token"]
    assert shop.token_claimed_until is None  # the claim was released


def test_workers_that_all_got_a_401_send_one_refresh(lock_services, shopify):
    services = lock_services
    endpoint = TokenEndpoint(shopify, delay=0.3)
    make_shop(services, token=OLD, expires_in=timedelta(minutes=50), refresh_token=REFRESH)

    results = run_together(4, lambda: tokens.access_token(services, SHOP, force_refresh=True, rejected=OLD))

    assert endpoint.calls == 1
    assert results == [endpoint.granted[0]["access_token"]] * 4


def test_a_claim_left_by_a_crashed_worker_expires(services, shopify):
    endpoint = TokenEndpoint(shopify)
    expiring_shop(services, token_claimed_until=utcnow() + timedelta(seconds=0.6))
    started = time.monotonic()
    token = tokens.access_token(services, SHOP)
    assert time.monotonic() - started >= 0.4, "it waited for the other worker's claim"
    assert token == endpoint.granted[0]["access_token"] and endpoint.calls == 1


def test_a_redis_lock_left_by_a_crashed_worker_expires(database_url, redis_url, shopify, monkeypatch):
    from plugin.auth import token_lock

    app = create_app(make_config(database_url, redis_url=redis_url))
    services = app.extensions["amends"]
    empty_tables(services.db.engine)
    try:
        endpoint = TokenEndpoint(shopify)
        expiring_shop(services)
        services.redis.set(f"amends:token-lock:{SHOP}", "crashed-worker", px=600)
        started = time.monotonic()
        assert tokens.access_token(services, SHOP) == endpoint.granted[0]["access_token"]
        assert time.monotonic() - started >= 0.4
        assert token_lock.HOLD_SECONDS >= 20  # longer than a grant's timeouts
    finally:
        services.close()


# -- at rest ------------------------------------------------------------------------------


def raw_rows(services: Services) -> list[str]:
    """Every shops row as the database holds it (binary columns decoded as Latin-1)."""
    with services.db.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT * FROM shops")).all()

    def text(value: object) -> str:
        if isinstance(value, memoryview):
            value = bytes(value)
        return value.decode("latin-1") if isinstance(value, bytes) else str(value)

    return [" ".join(text(v) for v in row) for row in rows]


def test_tokens_are_absent_from_raw_rows(services, shopify):
    endpoint = TokenEndpoint(shopify)
    expiring_shop(services)
    tokens.access_token(services, SHOP)
    granted = endpoint.granted[0]
    (row,) = raw_rows(services)
    for secret in (OLD, REFRESH, granted["access_token"], granted["refresh_token"]):
        assert secret not in row
    assert "gAAAAA" in row  # Fernet ciphertext is what is there


def test_rotate_token_keys_reencrypts_every_token_with_the_newest_key(database_url, shopify):
    from plugin.cli import cli
    from tests.test_install import cli_env

    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    app = create_app(make_config(database_url, token_keys=(old_key,)))
    services = app.extensions["amends"]
    empty_tables(services.db.engine)
    try:
        expiring_shop(services)
        make_shop(services, domain="other-store.myshopify.com", token="shpat_other")
        make_shop(
            services, domain="gone-store.myshopify.com", token="x", uninstalled_at=utcnow(), access_token=None
        )

        result = CliRunner().invoke(
            cli,
            ["rotate-token-keys"],
            env=cli_env(database_url, TOKEN_ENCRYPTION_KEYS=f"{new_key},{old_key}"),
        )
        assert result.exit_code == 0, result.output
        assert "2 shop(s) re-encrypted" in result.output

        only_new = TokenCipher((new_key,), "another-secret-key-so-the-derived-key-differs")
        shop = load(services)
        assert only_new.decrypt(shop.access_token) == OLD
        assert only_new.decrypt(shop.refresh_token) == REFRESH
        assert only_new.decrypt(load(services, "other-store.myshopify.com").access_token) == "shpat_other"
    finally:
        services.close()


def test_rotate_token_keys_needs_the_keys_configured(database_url):
    from plugin.cli import cli
    from tests.test_install import cli_env

    result = CliRunner().invoke(cli, ["rotate-token-keys"], env=cli_env(database_url))
    assert result.exit_code == 1
    assert "TOKEN_ENCRYPTION_KEYS is not set" in result.output


def test_tokens_stored_before_keys_were_configured_still_open(config):
    before = TokenCipher((), config.secret_key)
    ciphertext = before.encrypt("shpat_from_before")
    key = Fernet.generate_key().decode()
    after = TokenCipher((key,), config.secret_key)
    assert after.decrypt(ciphertext) == "shpat_from_before"
    assert TokenCipher((key,), "x" * 40).decrypt(after.rotate(ciphertext)) == "shpat_from_before"
