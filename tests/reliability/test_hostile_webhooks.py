"""Hostile input at POST /webhooks: fuzzed headers, bodies, encodings and sizes, forged and
replayed signatures. Never a 5xx; never a recorded delivery, a queued job or any Redis write
without a valid signature.

The property-based part runs against the app in-process (real PostgreSQL, real Redis queue)
for speed; `test_gunicorn_*` send raw, malformed HTTP to gunicorn, which no test client can.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from plugin.models import Delivery, Incident
from plugin.services import Services
from plugin.signing import webhook_signature
from tests import services as real
from tests.conftest import API_SECRET, OLD_SECRET, make_config
from tests.factories import SHOP, make_shop
from tests.reliability import report
from wsgi import create_app

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "400"))
OTHER_APP_SECRET = "shpss_another_apps_secret_0123456789"

TOPICS = [
    "fulfillment_events/create",
    "returns/request",
    "refunds/create",
    "orders/create",
    "app/uninstalled",
    "customers/redact",
    "shop/redact",
    "customers/data_request",
]
SHOPIFY_HEADERS = [
    "X-Shopify-Topic",
    "X-Shopify-Shop-Domain",
    "X-Shopify-Webhook-Id",
    "X-Shopify-Hmac-Sha256",
    "X-Shopify-Event-Id",
    "X-Shopify-API-Version",
    "X-Shopify-Triggered-At",
    "X-Shopify-Name",
    "Content-Type",
    "Content-Encoding",
]

# What a real server hands the app: latin-1 text without line breaks. Plus full Unicode,
# which the test client allows and robust code must not care about.
wire_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"))
header_value = st.one_of(
    wire_text,
    st.text(st.characters(exclude_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=50),
    st.text(max_size=600, alphabet="ab-.0123456789").map(lambda s: s * 3),
    st.sampled_from(["", " ", SHOP, "2026-07", "2099-99", "x" * 300, "not a date", "\t", "é"]),
)
header_name = st.one_of(
    st.sampled_from(SHOPIFY_HEADERS).flatmap(
        lambda name: st.sampled_from([name, name.lower(), name.upper(), name.replace("-", "_")])
    ),
    st.from_regex(r"\AX-[A-Za-z0-9-]{1,30}\Z"),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)


def _shopify_like(draw: Any) -> dict[str, Any]:
    """Almost-valid payloads: the right field names with hostile values."""
    return draw(
        st.fixed_dictionaries(
            {},
            optional={
                "id": st.one_of(st.integers(), st.text(max_size=30), st.none(), st.floats()),
                "order_id": st.one_of(
                    st.integers(), st.text(max_size=30), st.none(), st.lists(st.integers())
                ),
                "status": st.one_of(
                    st.sampled_from(["delayed", "delivered", "failure", "requested"]), st.text()
                ),
                "happened_at": st.one_of(st.text(max_size=40), st.integers(), st.none()),
                "order": st.one_of(st.none(), st.text(), st.dictionaries(st.text(max_size=5), json_values)),
                "customer": st.one_of(st.none(), st.dictionaries(st.text(max_size=8), json_values)),
                "shop_domain": st.text(max_size=40),
                "orders_to_redact": st.one_of(st.lists(st.integers()), st.text()),
                "return": st.one_of(st.none(), json_values),
            },
        )
    )


@st.composite
def bodies(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["binary", "text", "json", "shopify", "big", "empty", "nested"]))
    if kind == "binary":
        return bytes(draw(st.binary(max_size=3000)))
    if kind == "empty":
        return b""
    if kind == "big":
        # Around the 1 MB limit, both sides of it.
        size = draw(st.sampled_from([999_990, 1_000_000, 1_000_001, 1_500_000]))
        return b'{"a":"' + b"x" * (size - 8) + b'"}'
    if kind == "nested":
        depth = draw(st.integers(1, 5000))
        return b"[" * depth + b"]" * depth
    if kind == "text":
        value: Any = draw(st.text(max_size=400))
    elif kind == "json":
        value = draw(json_values)
    else:
        value = _shopify_like(draw)
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=draw(st.booleans()))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "utf-32", "latin-1", "utf-8-sig"]))
    return text.encode(encoding, errors="replace")


@st.composite
def requests_(draw: Any) -> tuple[bytes, dict[str, str], str]:
    body = draw(bodies())
    headers: dict[str, str] = {}
    if draw(st.sampled_from([True, True, True, False])):
        # The usual Shopify headers, with some values replaced by hostile ones.
        headers.update(
            {
                "X-Shopify-Topic": draw(st.one_of(st.sampled_from(TOPICS), header_value)),
                "X-Shopify-Shop-Domain": draw(st.one_of(st.just(SHOP), header_value)),
                "X-Shopify-Webhook-Id": draw(st.one_of(st.uuids().map(str), header_value)),
                "X-Shopify-API-Version": draw(st.one_of(st.just("2026-07"), header_value)),
            }
        )
    for name, value in draw(st.dictionaries(header_name, header_value, max_size=8)).items():
        headers[name] = value
    signing = draw(
        st.sampled_from(
            [
                "valid",
                "none",
                "valid",
                "garbage",
                "valid",
                "other_app",
                "other_body",
                "old_secret",
                "valid_padded",
            ]
        )
    )
    for name in [h for h in headers if h.lower() == "x-shopify-hmac-sha256"]:
        del headers[name]
    if signing == "garbage":
        headers["X-Shopify-Hmac-Sha256"] = draw(header_value)
    elif signing == "other_app":
        headers["X-Shopify-Hmac-Sha256"] = webhook_signature(body, OTHER_APP_SECRET)
    elif signing == "other_body":
        headers["X-Shopify-Hmac-Sha256"] = webhook_signature(body + b" ", API_SECRET)
    elif signing == "old_secret":
        headers["X-Shopify-Hmac-Sha256"] = webhook_signature(body, OLD_SECRET)
    elif signing == "valid":
        headers["X-Shopify-Hmac-Sha256"] = webhook_signature(body, API_SECRET)
    elif signing == "valid_padded":
        headers["X-Shopify-Hmac-Sha256"] = " " + webhook_signature(body, API_SECRET) + " "
    return body, headers, signing


SIGNED = ("valid", "valid_padded", "old_secret")


def _valid_request() -> tuple[bytes, dict[str, str], str]:
    body = json.dumps({"id": 7, "order_id": 8, "status": "delayed"}).encode()
    headers = {
        "X-Shopify-Topic": "fulfillment_events/create",
        "X-Shopify-Shop-Domain": SHOP,
        "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        "X-Shopify-Hmac-Sha256": webhook_signature(body, API_SECRET),
    }
    return body, headers, "valid"


@pytest.fixture(scope="module")
def intake(database_url: str, redis_session: tuple[str, Any]) -> Iterator[tuple[Flask, Services, Any]]:
    url, redis = redis_session
    real.flush_redis(redis)
    app = create_app(make_config(database_url, redis_url=url))
    services: Services = app.extensions["amends"]
    real.empty_tables(services.db.engine)
    make_shop(services)
    yield app, services, redis
    real.empty_tables(services.db.engine)
    real.flush_redis(redis)
    services.close()


def redis_state(redis: Any) -> dict[bytes, Any]:
    """Every key with a summary of its value: any write shows up as a difference."""
    state: dict[bytes, Any] = {}
    for key in redis.scan_iter(count=1000):
        kind = redis.type(key)
        size = {
            b"list": redis.llen,
            b"zset": redis.zcard,
            b"set": redis.scard,
            b"hash": redis.hlen,
            b"string": redis.strlen,
            b"stream": redis.xlen,
        }.get(kind)
        state[key] = (kind, size(key) if size else None)
    return state


def db_state(services: Services) -> tuple[set[str], int]:
    with services.db.session() as session:
        ids = set(session.scalars(select(Delivery.webhook_id)))
        incidents = session.scalar(select(func.count()).select_from(Incident)) or 0
    return ids, incidents


def test_fuzzed_webhooks_never_5xx_and_never_work_without_a_signature(intake: Any) -> None:
    app, services, redis = intake
    client = app.test_client()
    seen: dict[str, int] = {}
    found = report.section(
        "Fuzzing POST /webhooks (hypothesis)",
        f"{EXAMPLES} generated requests: random/Shopify headers in any case, binary, text, JSON and "
        "Shopify-shaped bodies in 6 encodings, 0 B to 1.5 MB, nesting to 5,000 levels; unsigned, "
        "garbage, other app's secret, other body's HMAC, old secret, valid",
    )

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(requests_())
    @example(_valid_request())
    def check(request: tuple[bytes, dict[str, str], str]) -> None:
        body, headers, signing = request
        before_redis = redis_state(redis)
        before_ids, before_incidents = db_state(services)
        response = client.post("/webhooks", data=body, headers=headers)
        status = response.status_code
        seen[f"{signing}:{status}"] = seen.get(f"{signing}:{status}", 0) + 1
        assert status < 500, (status, response.data[:300], headers)
        after_ids, after_incidents = db_state(services)
        if signing not in SIGNED:
            assert status in (401, 413), (status, response.data[:300])
            assert after_ids == before_ids, "an unsigned request recorded a delivery"
            assert redis_state(redis) == before_redis, "an unsigned request wrote to Redis"
            assert after_incidents == before_incidents
        elif status != 200:
            assert after_ids == before_ids, "a refused request recorded a delivery"
            assert redis_state(redis) == before_redis, "a refused request queued work"
        assert response.is_json

    check()
    # The property only means something if signed requests got through as well.
    assert seen.get("valid:200", 0) >= 1, seen
    found.add(**{"answers (signing:status → count)": dict(sorted(seen.items()))})
    found.add(**{"5xx answers": 0, "work created without a valid signature": 0})


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong_hmac", 401),
        ("other_apps_secret", 401),
        ("hmac_of_another_body", 401),
        ("hex_instead_of_base64", 401),
        ("truncated_hmac", 401),
        ("hmac_in_query_string_only", 401),
        ("old_secret", 200),
        ("replayed_same_webhook_id", 200),
        # Found by the fuzzer: json.loads raised RecursionError (a 500) on a signed body.
        ("signed_but_nested_5000_deep", 400),
        # Found by the fuzzer: signed headers longer than their columns were a 503 (DataError).
        ("signed_api_version_of_300_chars", 400),
        ("signed_shop_domain_of_300_chars", 400),
        ("signed_topic_with_a_control_character", 400),
    ],
)
def test_forged_and_replayed_deliveries(intake: Any, case: str, expected: int) -> None:
    import hashlib
    import hmac as hmac_module

    app, services, redis = intake
    client = app.test_client()
    body = json.dumps(
        {"id": 1, "order_id": 2, "status": "delayed", "happened_at": "2026-07-01T00:00:00Z"}
    ).encode()
    webhook_id = str(uuid.uuid4())
    headers = {
        "X-Shopify-Topic": "fulfillment_events/create",
        "X-Shopify-Shop-Domain": SHOP,
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-API-Version": "2026-07",
        "Content-Type": "application/json",
        "X-Shopify-Hmac-Sha256": webhook_signature(body, API_SECRET),
    }
    query = ""
    if case == "wrong_hmac":
        headers["X-Shopify-Hmac-Sha256"] = webhook_signature(b"x", API_SECRET)
    elif case == "other_apps_secret":
        headers["X-Shopify-Hmac-Sha256"] = webhook_signature(body, OTHER_APP_SECRET)
    elif case == "hmac_of_another_body":
        headers["X-Shopify-Hmac-Sha256"] = webhook_signature(
            body.replace(b"delayed", b"delivered"), API_SECRET
        )
    elif case == "hex_instead_of_base64":
        headers["X-Shopify-Hmac-Sha256"] = hmac_module.new(
            API_SECRET.encode(), body, hashlib.sha256
        ).hexdigest()
    elif case == "truncated_hmac":
        headers["X-Shopify-Hmac-Sha256"] = headers["X-Shopify-Hmac-Sha256"][:20]
    elif case == "hmac_in_query_string_only":
        query = "?hmac=" + headers.pop("X-Shopify-Hmac-Sha256")
    elif case == "old_secret":
        headers["X-Shopify-Hmac-Sha256"] = webhook_signature(body, OLD_SECRET)
    elif case == "signed_api_version_of_300_chars":
        headers["X-Shopify-API-Version"] = "2026-07" * 43
    elif case == "signed_shop_domain_of_300_chars":
        headers["X-Shopify-Shop-Domain"] = "a" * 286 + ".myshopify.com"
    elif case == "signed_topic_with_a_control_character":
        headers["X-Shopify-Topic"] = "fulfillment_events/create\x01"
    elif case == "signed_but_nested_5000_deep":
        body = b"[" * 5000 + b"]" * 5000
        headers["X-Shopify-Hmac-Sha256"] = webhook_signature(body, API_SECRET)

    before_ids, _ = db_state(services)
    before_redis = redis_state(redis)
    response = client.post("/webhooks" + query, data=body, headers=headers)
    assert response.status_code == expected
    after_ids, _ = db_state(services)
    if expected != 200:
        assert after_ids == before_ids
        assert redis_state(redis) == before_redis
        return
    assert after_ids == before_ids | {webhook_id}
    if case == "replayed_same_webhook_id":
        # A replay of a recorded delivery is acknowledged and changes nothing.
        snapshot = redis_state(redis)
        for _ in range(3):
            again = client.post("/webhooks", data=body, headers=headers)
            assert again.status_code == 200
        assert db_state(services)[0] == after_ids
        assert redis_state(redis) == snapshot
