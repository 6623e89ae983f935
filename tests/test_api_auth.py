"""Every /api/ route needs a valid session token; dev mode's demo-shop bypass exists only
without Shopify credentials, and never when SHOPIFY_API_SECRET is set."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from plugin.api.routes import routes
from plugin.config import DEV_SHOP, Config
from plugin.demo import ensure_demo_shop
from plugin.services import Services
from tests import services as real
from tests.admin_data import ApiClient, seed_incident, session_token
from tests.conftest import API_KEY, make_config
from tests.factories import OTHER_SHOP, SHOP
from wsgi import create_app

PROTECTED = [op for op in routes.operations if not op.public]


def concrete(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?\w+>", "1", rule)


def call(api: ApiClient, method: str, path: str, headers: dict[str, str]) -> Any:
    body = {"json": {}} if method in ("PUT", "PATCH", "POST") else {}
    return api.request(method, path, headers=headers, **body)


# Built when each test runs (a session token lives one minute), each refused for its own reason.
REFUSED_HEADERS: dict[str, Callable[[], dict[str, str]]] = {
    "no header": dict,
    "not bearer": lambda: {"Authorization": "Basic dXNlcjpwYXNz"},
    "empty bearer": lambda: {"Authorization": "Bearer "},
    "garbage": lambda: {"Authorization": "Bearer not.a.jwt"},
    "wrong secret": lambda: {"Authorization": f"Bearer {session_token(SHOP, secret='x' * 40)}"},
    "wrong audience": lambda: {"Authorization": f"Bearer {session_token(SHOP, audience='someone-else')}"},
    "expired": lambda: {"Authorization": f"Bearer {session_token(SHOP, expires_in=-120)}"},
    "iss and dest differ": lambda: {
        "Authorization": f"Bearer {session_token(SHOP, iss=f'https://{OTHER_SHOP}/admin')}"
    },
    "not a shop": lambda: {
        "Authorization": "Bearer "
        + session_token(
            "evil.example.com", iss="https://evil.example.com/admin", dest="https://evil.example.com"
        )
    },
}


@pytest.mark.parametrize("operation", PROTECTED, ids=lambda op: f"{op.method} {op.rule}")
@pytest.mark.parametrize("headers", REFUSED_HEADERS.values(), ids=list(REFUSED_HEADERS))
def test_every_route_refuses_a_missing_or_bad_session_token(admin_api, services, operation, headers):
    seed_incident(services, SHOP)  # something to leak, if anything did
    api = ApiClient(admin_api.client, None, admin_api.openapi)
    response = call(api, operation.method, concrete(operation.rule), headers())
    assert response.status_code == 401
    assert response.headers["X-Shopify-Retry-Invalid-Session-Request"] == "1"
    assert response.get_json()["error"] == "unauthorized"


def test_a_valid_token_for_an_installed_shop_is_let_in(admin_api):
    response = admin_api.get("/api/overview")
    assert response.status_code == 200
    assert response.get_json()["shop"]["domain"] == SHOP
    assert response.get_json()["shop"]["dev_mode"] is False


def test_the_openapi_document_is_public(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response.get_json()["openapi"] == "3.1.0"


# --- dev mode --------------------------------------------------------------------------------


@pytest.fixture
def dev_app(database_url: str) -> Iterator[Flask]:
    app = create_app(make_config(database_url, env="development", shopify_credentials_set=False))
    real.empty_tables(app.extensions["amends"].db.engine)
    yield app
    app.extensions["amends"].close()


def test_dev_mode_opens_the_demo_shop_without_a_token(dev_app, openapi):
    services: Services = dev_app.extensions["amends"]
    assert services.config.dev_login
    ensure_demo_shop(services)
    seed_incident(services, DEV_SHOP, order_name="#D1")
    api = ApiClient(dev_app.test_client(), None, openapi)
    overview = api.get("/api/overview").get_json()
    assert overview["shop"]["domain"] == DEV_SHOP and overview["shop"]["dev_mode"] is True
    assert [i["order_name"] for i in api.get("/api/incidents").get_json()["items"]] == ["#D1"]


def test_dev_mode_without_the_demo_shop_says_so(dev_app, openapi):
    api = ApiClient(dev_app.test_client(), None, openapi)
    response = api.get("/api/overview")
    assert response.status_code == 401
    assert DEV_SHOP in response.get_json()["message"]


def test_dev_mode_still_checks_a_token_that_is_sent(dev_app, openapi):
    ensure_demo_shop(dev_app.extensions["amends"])
    api = ApiClient(dev_app.test_client(), None, openapi)
    response = api.get("/api/overview", headers={"Authorization": "Bearer forged"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "environ",
    [
        {"AMENDS_ENV": "development", "SHOPIFY_API_SECRET": "a-real-client-secret-0123456789abcdef"},
        {"AMENDS_ENV": "test", "SHOPIFY_API_SECRET": "a-real-client-secret-0123456789abcdef"},
        {"AMENDS_ENV": "test"},
    ],
    ids=["development with a secret", "test with a secret", "test without a secret"],
)
def test_the_bypass_is_never_active_with_a_secret_or_outside_development(database_url, openapi, environ):
    config = Config.from_env({**environ, "DATABASE_URL": database_url})
    assert config.dev_login is False
    app = create_app(config)
    services: Services = app.extensions["amends"]
    try:
        real.empty_tables(services.db.engine)
        ensure_demo_shop(services)  # the demo shop exists: only the bypass is missing
        seed_incident(services, DEV_SHOP)
        api = ApiClient(app.test_client(), None, openapi)
        for path in ("/api/overview", "/api/incidents", "/api/settings"):
            response = api.get(path)
            assert response.status_code == 401, path
            assert "#1001" not in response.get_data(as_text=True)
    finally:
        services.close()


def test_production_needs_the_secret_so_it_never_has_the_bypass():
    base = {
        "AMENDS_ENV": "production",
        "SHOPIFY_API_KEY": API_KEY,
        "SHOPIFY_APP_URL": "https://amends.example.com",
        "DATABASE_URL": "postgresql://u@db/amends",
        "REDIS_URL": "redis://r:6379/0",
        "SMTP_URL": "smtp://mail:587",
        "MAIL_FROM": "Amends <a@example.com>",
        "SECRET_KEY": "s" * 40,
    }
    from plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="SHOPIFY_API_SECRET"):
        Config.from_env(base)
    assert Config.from_env({**base, "SHOPIFY_API_SECRET": "x" * 38}).dev_login is False
