"""Fixtures: the app on a real migrated database (SQLite, or PostgreSQL with
TEST_DATABASE=postgres), real Redis, a real SMTP server. Shopify's HTTP is the only fake,
and `responses` blocks every other outgoing request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from plugin.config import Config
from plugin.services import Services
from tests import services as real
from wsgi import create_app

API_KEY = "test-api-key"
# Shopify client secrets are 32 hex characters after their prefix; PyJWT warns (an error
# here) about HMAC keys under 32 bytes.
API_SECRET = "test-api-secret-0123456789abcdef01"
OLD_SECRET = "test-api-secret-old-0123456789abcd"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, drop = real.create_database(str(tmp_path_factory.mktemp("db")))
    yield url
    drop()


@pytest.fixture(scope="session")
def redis_session() -> Iterator[tuple[str, Any]]:
    url, client = real.claim_redis_db()
    yield url, client
    client.flushdb()
    client.close()


@pytest.fixture
def redis_url(redis_session: tuple[str, Any]) -> Iterator[str]:
    url, client = redis_session
    real.flush_redis(client)
    yield url
    real.flush_redis(client)


@pytest.fixture
def smtp_server() -> Iterator[real.SmtpServer]:
    yield from real.run_smtp_server()


def make_config(database_url: str, **overrides: Any) -> Config:
    base = Config(
        env="test",
        shopify_api_key=API_KEY,
        shopify_api_secret=API_SECRET,
        shopify_api_secret_old=OLD_SECRET,
        shopify_credentials_set=True,
        app_url="https://amends.example.test",
        database_url=database_url,
        redis_url=None,
        smtp_url=None,
        mail_from="Amends <amends@example.test>",
        secret_key="test-secret-key-0123456789abcdef0123456789",
        extra={"retry_base_seconds": 0.05},
    )
    return base.with_overrides(**overrides)


@pytest.fixture
def config(database_url: str) -> Config:
    return make_config(database_url)


@pytest.fixture
def app(config: Config) -> Iterator[Flask]:
    app = create_app(config)
    services: Services = app.extensions["amends"]
    real.empty_tables(services.db.engine)
    yield app
    services.close()


@pytest.fixture
def services(app: Flask) -> Services:
    return app.extensions["amends"]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def shopify() -> Iterator[responses.RequestsMock]:
    """Shopify's HTTP, faked; any request no test registered fails the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture(scope="session")
def openapi() -> Any:
    """The admin API's OpenAPI document, to check real answers against."""
    from plugin.api.document import document
    from tests.openapi_check import OpenApi

    return OpenApi(document())


@pytest.fixture
def admin_api(client: FlaskClient, services: Services, openapi: Any) -> Any:
    """The admin API as the embedded page calls it for the shop `tests.factories.SHOP`
    (installed, test mode off); every answer is checked against the OpenAPI document."""
    from tests.admin_data import ApiClient
    from tests.factories import SHOP, make_shop

    make_shop(services)
    return ApiClient(client, SHOP, openapi)


@pytest.fixture
def admin_api_queued(database_url: str, redis_url: str, openapi: Any) -> Iterator[Any]:
    """`admin_api` on an app whose queue is Redis with no worker: the jobs a request enqueues
    stay in `.queue` to be read, and none runs (so none reaches for Shopify)."""
    from rq import Queue
    from rq.serializers import JSONSerializer

    from tests.admin_data import ApiClient
    from tests.factories import SHOP, make_shop

    app = create_app(make_config(database_url, redis_url=redis_url))
    services: Services = app.extensions["amends"]
    real.empty_tables(services.db.engine)
    make_shop(services)
    api = ApiClient(app.test_client(), SHOP, openapi)
    api.services = services
    api.queue = Queue(services.config.queue_name, connection=services.redis, serializer=JSONSerializer)
    yield api
    services.close()


@pytest.fixture
def intake(services: Services, shopify: responses.RequestsMock) -> Iterator[Any]:
    """An installed shop in test mode and its faked Admin API (see tests/intake.py)."""
    from tests.intake import start_intake

    yield from start_intake(services, shopify)
