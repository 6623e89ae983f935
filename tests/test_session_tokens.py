"""Session tokens for the admin: the rejection table, token exchange for a shop with no
usable offline token, the app home's first load (id_token or query HMAC), the CSP header,
and one shop's token never reaching another shop's data."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from flask import g, jsonify
from sqlalchemy import select

from plugin.auth import pages
from plugin.auth.session import authenticate_document, require_shop
from plugin.db import utcnow
from plugin.errors import AuthError
from plugin.models import DataExport, Shop
from tests.auth_fakes import AdminApi, TokenEndpoint, session_token, signed_query
from tests.conftest import API_KEY, API_SECRET, OLD_SECRET
from tests.factories import OTHER_SHOP, SHOP, make_shop

WHOAMI = "/api/_test/whoami"
HOME = "/_test/home"
RETRY = "X-Shopify-Retry-Invalid-Session-Request"
HOST = "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvY2FsbS1jb2ZmZWU"


@pytest.fixture
def web(app):
    """The app with one /api/ view behind `require_shop` and one page using
    `authenticate_document`, as the admin API and the app home use them."""

    @require_shop
    def whoami():
        return jsonify(shop=g.shop_domain, shop_id=g.shop_id)

    def home():
        try:
            shop = authenticate_document()
        except AuthError as error:
            return pages.refusal(error)
        return f"<!doctype html><p>Amends for {shop.domain}</p>"

    app.add_url_rule(WHOAMI, "test_whoami", whoami)
    app.add_url_rule(HOME, "test_home", home)
    return app.test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def shop_row(services, domain=SHOP) -> Shop | None:
    with services.db.session() as session:
        return session.scalar(select(Shop).where(Shop.domain == domain))


# -- the rejection table ------------------------------------------------------------------


def _none_token() -> str:
    claims = jwt.decode(session_token(), options={"verify_signature": False})
    return jwt.encode(claims, None, algorithm="none")


REJECTED = {
    "wrong audience": lambda: bearer(session_token(aud="another-app")),
    "wrong signature": lambda: bearer(session_token(secret="not-our-secret")),
    "expired": lambda: bearer(session_token(exp_in=-30)),
    "not valid yet": lambda: bearer(session_token(nbf_in=60)),
    "iss and dest name different shops": lambda: bearer(session_token(iss=f"https://{OTHER_SHOP}/admin")),
    "iss is not the admin": lambda: bearer(session_token(iss=f"https://{SHOP}/")),
    "dest is not a shop": lambda: bearer(
        session_token(iss="https://evil.com/admin", dest="https://evil.com")
    ),
    "dest is a look-alike": lambda: bearer(
        session_token(iss=f"https://{SHOP}.evil.com/admin", dest=f"https://{SHOP}.evil.com")
    ),
    "dest over http": lambda: bearer(session_token(iss=f"http://{SHOP}/admin", dest=f"http://{SHOP}")),
    "no exp": lambda: bearer(session_token(drop=("exp",))),
    "no dest": lambda: bearer(session_token(drop=("dest",))),
    "no sub": lambda: bearer(session_token(drop=("sub",))),
    "alg none": lambda: bearer(_none_token()),
    "another algorithm": lambda: bearer(session_token(algorithm="HS512")),
    "not a JWT": lambda: bearer("not-a-jwt"),
    "no header": lambda: {},
    "not a bearer token": lambda: {"Authorization": f"Basic {session_token()}"},
}


@pytest.mark.parametrize("headers", REJECTED.values(), ids=REJECTED.keys())
def test_invalid_session_tokens_get_401_with_the_retry_header(web, services, shopify, headers):
    make_shop(services)
    token_endpoint = TokenEndpoint(shopify)

    response = web.get(WHOAMI, headers=headers())

    assert response.status_code == 401
    assert response.headers[RETRY] == "1"
    assert response.json["error"] == "unauthorized"
    assert token_endpoint.calls == 0, "a token that fails verification is never exchanged"


def test_an_uninstalled_shop_is_refused_when_shopify_refuses_the_exchange(web, services, shopify):
    make_shop(services, uninstalled_at=utcnow(), access_token=None)
    token_endpoint = TokenEndpoint(shopify, answers=[(400, {"error": "invalid_subject_token"})])
    token = session_token()

    response = web.get(WHOAMI, headers=bearer(token))

    assert response.status_code == 401 and response.headers[RETRY] == "1"
    assert "has not installed Amends" in response.json["message"]
    assert token_endpoint.forms[0]["subject_token"] == token
    assert not shop_row(services).installed


def test_a_valid_token_for_an_installed_shop_is_accepted(web, services, shopify):
    shop = make_shop(services)
    token_endpoint = TokenEndpoint(shopify)
    response = web.get(WHOAMI, headers=bearer(session_token()))
    assert response.status_code == 200
    assert response.json == {"shop": SHOP, "shop_id": shop.id}
    assert token_endpoint.calls == 0


def test_clock_skew_within_ten_seconds_is_allowed(web, services, shopify):
    make_shop(services)
    TokenEndpoint(shopify)
    assert web.get(WHOAMI, headers=bearer(session_token(exp_in=-5))).status_code == 200
    assert web.get(WHOAMI, headers=bearer(session_token(nbf_in=5))).status_code == 200
    assert web.get(WHOAMI, headers=bearer(session_token(exp_in=-15))).status_code == 401


def test_a_token_signed_with_the_old_secret_is_accepted_during_rotation(web, services, shopify):
    make_shop(services)
    TokenEndpoint(shopify)
    assert web.get(WHOAMI, headers=bearer(session_token(secret=OLD_SECRET))).status_code == 200


# -- token exchange -----------------------------------------------------------------------


def test_a_new_shop_is_installed_by_token_exchange(web, services, shopify):
    token_endpoint = TokenEndpoint(shopify)
    admin = AdminApi(shopify, accept_any_token=True)
    token = session_token()

    response = web.get(WHOAMI, headers=bearer(token))

    assert response.status_code == 200, response.json
    assert token_endpoint.forms == [
        {
            "client_id": API_KEY,
            "client_secret": API_SECRET,
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": token,
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "requested_token_type": "urn:shopify:params:oauth:token-type:offline-access-token",
            "expiring": "1",
        }
    ]
    shop = shop_row(services)
    granted = token_endpoint.granted[0]
    assert shop.installed and shop.installed_via == "token_exchange" and shop.test_mode
    assert services.cipher.decrypt(shop.access_token) == granted["access_token"]
    assert services.cipher.decrypt(shop.refresh_token) == granted["refresh_token"]
    assert shop.access_token_expires_at > utcnow() + timedelta(minutes=55)

    assert web.get(WHOAMI, headers=bearer(session_token())).status_code == 200
    assert token_endpoint.calls == 1, "a usable token is not exchanged again"
    assert services.queue.wait_idle(10)
    assert admin.operations == ["AmendsShopDetails"]
    assert shop_row(services).name == "Calm Coffee"


def test_a_shop_that_must_reauthenticate_is_fixed_by_opening_the_app(web, services, shopify):
    make_shop(services, reauth_reason="Shopify refused the token refresh (invalid_grant)")
    token_endpoint = TokenEndpoint(shopify)
    AdminApi(shopify, accept_any_token=True)

    assert web.get(WHOAMI, headers=bearer(session_token())).status_code == 200

    shop = shop_row(services)
    assert shop.reauth_reason is None
    assert services.cipher.decrypt(shop.access_token) == token_endpoint.granted[0]["access_token"]
    services.queue.wait_idle(10)


def test_a_shopify_managed_reinstall_brings_the_shop_back(web, services, shopify):
    shop = make_shop(services, uninstalled_at=utcnow(), access_token=None)
    TokenEndpoint(shopify)
    AdminApi(shopify, accept_any_token=True)
    assert web.get(WHOAMI, headers=bearer(session_token())).status_code == 200
    back = shop_row(services)
    assert back.id == shop.id and back.installed and back.installed_via == "token_exchange"
    services.queue.wait_idle(10)


def test_shopify_unreachable_during_the_exchange_is_a_503(web, services, shopify):
    TokenEndpoint(shopify, answers=[(503, {})])
    response = web.get(WHOAMI, headers=bearer(session_token()))
    assert response.status_code == 503
    assert RETRY not in response.headers
    assert shop_row(services) is None


def test_concurrent_first_requests_exchange_once(web, app, services, shopify):
    make_shop(services, reauth_reason="refresh refused")  # known shop: its row is the lock
    token_endpoint = TokenEndpoint(shopify, delay=0.3)
    AdminApi(shopify, accept_any_token=True)
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def request() -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(client.get(WHOAMI, headers=bearer(session_token())).status_code)

    threads = [threading.Thread(target=request) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 4
    assert token_endpoint.calls == 1
    services.queue.wait_idle(10)


# -- the app home's first load ------------------------------------------------------------


def test_first_load_with_an_id_token(web, services, shopify):
    make_shop(services)
    TokenEndpoint(shopify)
    response = web.get(
        HOME, query_string={"shop": SHOP, "embedded": "1", "host": HOST, "id_token": session_token()}
    )
    assert response.status_code == 200
    assert f"Amends for {SHOP}" in response.get_data(as_text=True)
    assert response.headers["Content-Security-Policy"] == (
        f"frame-ancestors https://{SHOP} https://admin.shopify.com;"
    )


def test_first_load_of_a_new_shop_exchanges_its_id_token(web, services, shopify):
    token_endpoint = TokenEndpoint(shopify)
    AdminApi(shopify, accept_any_token=True)
    token = session_token()
    response = web.get(HOME, query_string={"shop": SHOP, "embedded": "1", "id_token": token})
    assert response.status_code == 200
    assert token_endpoint.forms[0]["subject_token"] == token
    assert shop_row(services).installed
    services.queue.wait_idle(10)


def test_an_expired_id_token_bounces_through_app_bridge_for_a_fresh_one(web, services, shopify):
    make_shop(services)
    TokenEndpoint(shopify)
    query = {"shop": SHOP, "embedded": "1", "host": HOST, "id_token": session_token(exp_in=-120)}

    response = web.get(HOME, query_string=query)

    assert response.status_code == 302
    target = urlsplit(response.headers["Location"])
    params = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert target.path == "/auth/session-token"
    assert params["shop"] == SHOP and params["host"] == HOST
    reload = urlsplit(params["shopify-reload"])
    assert reload.path == HOME
    assert "id_token" not in parse_qs(reload.query) and parse_qs(reload.query)["embedded"] == ["1"]

    bounce = web.get(response.headers["Location"])
    page = bounce.get_data(as_text=True)
    assert bounce.status_code == 200
    assert f'<meta name="shopify-api-key" content="{API_KEY}">' in page
    assert "https://cdn.shopify.com/shopifycloud/app-bridge.js" in page
    assert (
        bounce.headers["Content-Security-Policy"]
        == f"frame-ancestors https://{SHOP} https://admin.shopify.com;"
    )


@pytest.mark.parametrize(
    "id_token",
    [lambda: session_token(secret="wrong"), lambda: session_token(aud="another-app"), lambda: "garbage"],
    ids=["wrong signature", "wrong audience", "garbage"],
)
def test_a_bad_id_token_is_refused_with_a_page(web, services, shopify, id_token):
    make_shop(services)
    TokenEndpoint(shopify)
    response = web.get(HOME, query_string={"shop": SHOP, "embedded": "1", "id_token": id_token()})
    assert response.status_code == 401
    assert response.mimetype == "text/html"
    assert "invalid session token" in response.get_data(as_text=True)


def test_an_id_token_for_another_shop_is_refused(web, services, shopify):
    make_shop(services)
    make_shop(services, domain=OTHER_SHOP)
    TokenEndpoint(shopify)
    response = web.get(HOME, query_string={"shop": OTHER_SHOP, "id_token": session_token(SHOP)})
    assert response.status_code == 401
    assert "another shop" in response.get_data(as_text=True)


def signed_home(shop: str = SHOP, **extra: str) -> dict[str, str]:
    return signed_query({"shop": shop, "host": HOST, "timestamp": str(int(time.time())), **extra})


def test_first_load_with_shopifys_query_hmac(web, services):
    make_shop(services)
    response = web.get(HOME, query_string=signed_home())
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"].startswith(f"frame-ancestors https://{SHOP} ")


def test_a_signed_load_for_a_shop_without_amends_starts_the_install_in_the_top_window(web, services):
    embedded = web.get(HOME, query_string=signed_home(embedded="1"))
    page = embedded.get_data(as_text=True)
    assert embedded.status_code == 200
    assert "https://cdn.shopify.com/shopifycloud/app-bridge.js" in page
    assert f'"https://amends.example.test/auth/install?shop={SHOP}"' in page
    assert '"_top"' in page

    top = web.get(HOME, query_string=signed_home())
    assert top.status_code == 302
    assert top.headers["Location"] == f"https://amends.example.test/auth/install?shop={SHOP}"


@pytest.mark.parametrize(
    ("query", "status"),
    [
        (lambda: {**signed_home(), "hmac": "0" * 64}, 401),
        (lambda: signed_home(timestamp=str(int(time.time()) - 3600)), 401),
        (lambda: signed_query({"shop": "evil.com", "timestamp": str(int(time.time()))}), 400),
    ],
    ids=["bad hmac", "stale", "not a shop"],
)
def test_a_bad_signed_load_is_refused(web, services, query, status):
    make_shop(services)
    response = web.get(HOME, query_string=query())
    assert response.status_code == status
    assert response.mimetype == "text/html"


def test_a_load_with_nothing_to_verify_says_where_to_open_amends(web):
    response = web.get(HOME)
    assert response.status_code == 400
    assert "Open Amends from your Shopify admin" in response.get_data(as_text=True)
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none';"


# -- one shop never reaches another's data ------------------------------------------------


def test_a_token_for_one_shop_gets_404_for_another_shops_export(web, app, services, shopify):
    if not any(rule.rule.startswith("/api/data-exports/") for rule in app.url_map.iter_rules()):
        pytest.skip("the admin API (data exports) is not part of this build yet")
    make_shop(services)
    other = make_shop(services, domain=OTHER_SHOP)
    TokenEndpoint(shopify)
    TokenEndpoint(shopify, shop=OTHER_SHOP)
    with services.db.session() as session:
        export = DataExport(shop_id=other.id, customer_email="jane@example.com", payload={"x": 1})
        session.add(export)
    mine = web.get(f"/api/data-exports/{export.id}", headers=bearer(session_token(SHOP)))
    theirs = web.get(f"/api/data-exports/{export.id}", headers=bearer(session_token(OTHER_SHOP)))
    assert mine.status_code == 404
    assert "jane@example.com" not in mine.get_data(as_text=True)
    assert theirs.status_code == 200
