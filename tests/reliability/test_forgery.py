"""Forged and replayed requests against the running app (gunicorn, the stand-in as Shopify):
OAuth callbacks that are stale, replayed or signed by someone else, and session tokens for
another shop or another app. Each is refused, and nothing is stored or granted.
(Forged webhooks: test_hostile_webhooks.py.)
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
import pytest
import requests
import sqlalchemy as sa

from tests.admin_data import seed_incident
from tests.factories import make_shop
from tests.reliability import report
from tests.reliability.deployment import Deployment, artifacts_dir, deploy
from tests.reliability.harness import API_KEY

pytestmark = pytest.mark.slow

NEW_SHOP = "fresh-install.myshopify.com"
OTHER_SHOP = "other-tenant.myshopify.com"
GONE_SHOP = "uninstalled-shop.myshopify.com"
OTHER_APP_SECRET = "shpss_another_apps_secret_0123456789"
RESULTS: dict[str, str] = {}


@pytest.fixture(scope="module")
def app(reliability_redis: int) -> Iterator[Deployment]:
    with deploy(artifacts_dir("test_forgery"), reliability_redis, workers=1) as d:
        make_shop(d.services, domain=OTHER_SHOP, token="shpat_other_tenant_token_0000000000", name="Other")
        make_shop(d.services, domain=GONE_SHOP, token="shpat_gone_shop_token_00000000000000", name="Gone")
        with d.engine.begin() as db:
            db.execute(sa.text("UPDATE shops SET uninstalled_at = now() WHERE domain = :d"), {"d": GONE_SHOP})
        yield d
    if RESULTS:
        section = report.section(
            "Forged and replayed requests",
            "OAuth callbacks (replayed, stale, other app's secret, shop or state swapped) and session "
            "tokens (another shop, another app, expired, not yet valid, iss/dest mismatch, alg none, "
            "uninstalled shop) against gunicorn",
        )
        section.add(**RESULTS)


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def _cookie(response: requests.Response, name: str) -> str | None:
    # Set-Cookie is Secure in production: requests' jar would not send it back over http.
    for header in response.raw.headers.getlist("Set-Cookie"):
        key, _, rest = header.partition("=")
        if key.strip() == name:
            return rest.split(";", 1)[0]
    return None


def _begin_install(d: Deployment, shop: str) -> tuple[str, str]:
    """GET /auth/install, then Shopify's authorize page (the stand-in approves at once):
    the callback URL Shopify sends the browser to, and the state cookie."""
    http = _session()
    started = http.get(f"{d.stack.base_url}/auth/install", params={"shop": shop}, allow_redirects=False)
    assert started.status_code == 302, started.text[:300]
    state = _cookie(started, "amends_oauth_state")
    assert state
    approved = http.get(started.headers["Location"], allow_redirects=False)
    assert approved.status_code == 302, approved.text[:300]
    return approved.headers["Location"], state


def _callback(d: Deployment, url: str, state: str | None) -> requests.Response:
    parts = urlsplit(url)
    headers = {"Cookie": f"amends_oauth_state={state}"} if state else {}
    return _session().get(
        f"{d.stack.base_url}{parts.path}?{parts.query}", headers=headers, allow_redirects=False, timeout=10
    )


def _resign(url: str, secret: str, **changes: str) -> str:
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    params.pop("hmac", None)
    params.update(changes)
    message = "&".join(f"{k}={params[k]}" for k in sorted(params))
    params["hmac"] = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(params)}"


def _installed(d: Deployment, shop: str) -> bool:
    with d.engine.connect() as db:
        return bool(
            db.execute(
                sa.text("SELECT 1 FROM shops WHERE domain = :d AND access_token IS NOT NULL"), {"d": shop}
            ).scalar()
        )


@pytest.mark.parametrize(
    "case",
    [
        "replayed_without_the_state_cookie",
        "stale_timestamp_resigned_by_shopify",
        "signed_with_another_apps_secret",
        "shop_swapped_after_signing",
        "state_cookie_from_another_install",
        "hmac_removed",
    ],
)
def test_forged_oauth_callback_is_refused_and_stores_nothing(app: Deployment, case: str) -> None:
    d = app
    shop = f"forged-{uuid.uuid4().hex[:8]}.myshopify.com"
    url, state = _begin_install(d, shop)
    secret = d.stack.api_secret
    cookie: str | None = state
    if case == "replayed_without_the_state_cookie":
        cookie = None
    elif case == "stale_timestamp_resigned_by_shopify":
        url = _resign(url, secret, timestamp=str(int(time.time()) - 3600))
    elif case == "signed_with_another_apps_secret":
        url = _resign(url, OTHER_APP_SECRET)
    elif case == "shop_swapped_after_signing":
        parts = urlsplit(url)
        params = dict(parse_qsl(parts.query))
        params["shop"] = OTHER_SHOP
        url = f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(params)}"
    elif case == "state_cookie_from_another_install":
        _, cookie = _begin_install(d, f"someone-else-{uuid.uuid4().hex[:6]}.myshopify.com")
    elif case == "hmac_removed":
        parts = urlsplit(url)
        params = {k: v for k, v in parse_qsl(parts.query) if k != "hmac"}
        url = f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(params)}"
    grants_before = d.standin.stats()["oauth_calls"]
    response = _callback(d, url, cookie)
    RESULTS[f"callback: {case}"] = str(response.status_code)
    assert response.status_code in (400, 401), response.status_code
    assert d.standin.stats()["oauth_calls"] == grants_before, "a refused callback still asked for a token"
    assert not _installed(d, shop)


def test_a_genuine_install_then_its_callback_replayed_without_the_cookie(app: Deployment) -> None:
    d = app
    url, state = _begin_install(d, NEW_SHOP)
    response = _callback(d, url, state)
    assert response.status_code == 302, response.text[:300]
    assert _installed(d, NEW_SHOP)
    grants = d.standin.stats()["oauth_calls"]
    replay = _callback(d, url, None)
    RESULTS["callback: genuine, then replayed"] = f"{response.status_code}, then {replay.status_code}"
    assert replay.status_code == 401
    assert d.standin.stats()["oauth_calls"] == grants


def _token(shop: str, secret: str, **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": f"https://{shop}/admin",
        "dest": f"https://{shop}",
        "aud": API_KEY,
        "sub": "42",
        "exp": now + 60,
        "nbf": now - 1,
        "iat": now - 1,
        "jti": str(uuid.uuid4()),
        "sid": "s",
        **claims,
    }
    return jwt.encode(payload, secret, algorithm="HS256")


def _unsigned(shop: str) -> str:
    token = _token(shop, "x")
    _, payload, _ = token.split(".")
    none_header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    return f"{none_header}.{payload}."


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("own_shop", 200),
        ("another_shops_token", 404),
        ("another_apps_secret", 401),
        ("another_apps_audience", 401),
        ("expired_five_minutes_ago", 401),
        ("not_valid_for_five_minutes", 401),
        ("iss_and_dest_differ", 401),
        ("alg_none", 401),
        ("signed_with_the_api_key", 401),
        # Only Shopify can sign a session token: one for an uninstalled shop means the merchant
        # opened Amends again (a Shopify-managed install), so it is exchanged for a new token,
        # and the shop sees its own (empty) data, never another's.
        ("uninstalled_shop_reinstalls", 404),
        ("no_token", 401),
    ],
)
def test_session_tokens_for_another_shop_or_app(app: Deployment, case: str, expected: int) -> None:
    d = app
    seeded = seed_incident(d.services, d.shop, order_name="#7001", email="owner-only@steady-shop.example")
    secret = d.stack.api_secret
    now = int(time.time())
    token: str | None = {
        "own_shop": lambda: _token(d.shop, secret),
        "another_shops_token": lambda: _token(OTHER_SHOP, secret),
        "another_apps_secret": lambda: _token(d.shop, OTHER_APP_SECRET),
        "another_apps_audience": lambda: _token(d.shop, secret, aud="another-apps-client-id"),
        "expired_five_minutes_ago": lambda: _token(
            d.shop, secret, exp=now - 300, iat=now - 360, nbf=now - 360
        ),
        "not_valid_for_five_minutes": lambda: _token(d.shop, secret, nbf=now + 300),
        "iss_and_dest_differ": lambda: _token(d.shop, secret, dest=f"https://{OTHER_SHOP}"),
        "alg_none": lambda: _unsigned(d.shop),
        "signed_with_the_api_key": lambda: _token(d.shop, API_KEY),
        "uninstalled_shop_reinstalls": lambda: _token(GONE_SHOP, secret),
        "no_token": lambda: None,
    }[case]()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = _session()
    detail = http.get(f"{d.stack.base_url}/api/incidents/{seeded.incident_id}", headers=headers, timeout=10)
    listing = http.get(f"{d.stack.base_url}/api/incidents", headers=headers, timeout=10)
    RESULTS[f"session token: {case}"] = f"{detail.status_code} (list {listing.status_code})"
    assert detail.status_code == expected, detail.text[:300]
    assert "owner-only@steady-shop.example" not in detail.text or expected == 200
    if expected == 401:
        assert listing.status_code == 401
        assert detail.headers.get("X-Shopify-Retry-Invalid-Session-Request") == "1"
    if case in ("another_shops_token", "uninstalled_shop_reinstalls"):
        assert listing.status_code == 200
        assert "owner-only@steady-shop.example" not in listing.text


RAW_REQUESTS = {
    "content_length_longer_than_body": (
        b"POST /webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n"
        b"X-Shopify-Topic: refunds/create\r\n\r\n{}"
    ),
    "bad_chunk_size": (
        b"POST /webhooks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n{}\r\n0\r\n\r\n"
    ),
    "chunked_and_content_length": (
        b"POST /webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n"
    ),
    "header_of_64_kb": b"POST /webhooks HTTP/1.1\r\nHost: x\r\nX-Shopify-Topic: "
    + b"a" * 65536
    + b"\r\n\r\n",
    "non_utf8_header_bytes": (
        b"POST /webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"X-Shopify-Topic: \xff\xfe\xc3\x28\r\n\r\n{}"
    ),
    "nul_in_a_header": (
        b"POST /webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-Shopify-Topic: a\x00b\r\n\r\n{}"
    ),
    "http_1_0_no_host": b"POST /webhooks HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}",
    "garbage_request_line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),
    "header_without_colon": b"POST /webhooks HTTP/1.1\r\nHost: x\r\nX-Shopify-Topic refunds\r\n\r\n",
    "negative_content_length": b"POST /webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}",
}


@pytest.mark.parametrize("case", list(RAW_REQUESTS))
def test_malformed_http_at_the_webhook_endpoint(app: Deployment, case: str) -> None:
    """What no HTTP client library would send: gunicorn and the app answer it without a 5xx
    (or close the connection), and nothing is recorded."""
    import socket

    d = app
    with d.engine.connect() as db:
        before = db.execute(sa.text("SELECT count(*) FROM deliveries")).scalar()
    port = int(d.stack.base_url.rsplit(":", 1)[1])
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(RAW_REQUESTS[case])
        try:
            conn.shutdown(socket.SHUT_WR)
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    answer = b"".join(chunks)
    status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "closed"
    RESULTS[f"raw HTTP: {case}"] = status
    assert not status.startswith("5"), answer[:300]
    with d.engine.connect() as db:
        assert db.execute(sa.text("SELECT count(*) FROM deliveries")).scalar() == before
    # The server is still there for the next request.
    assert requests.get(d.stack.base_url + "/healthz", timeout=10).status_code == 200
