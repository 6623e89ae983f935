"""The benchmark's load generator: wrk with our Lua, against the baseline app in a thread.

The benchmark itself is not part of the suite (figures never come from timed tests); this
only checks that what it sends is right: every request signed, every webhook id fresh, and
the paced mode near its rate."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import request
from werkzeug.serving import make_server

from bench import wrk
from bench.intake import deliveries
from bench.wrk import percentile
from tests.services import free_port

SECRET = "bench-test-secret"

needs_wrk = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)"
)


@pytest.fixture
def baseline(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[str]]]:
    from bench.baseline_app import create_app

    monkeypatch.setenv("SHOPIFY_API_SECRET", SECRET)
    app = create_app()
    seen: list[str] = []
    app.before_request(lambda: seen.append(request.headers.get("X-Shopify-Webhook-Id", "")) and None)
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.shutdown()


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 95) == 7
    assert percentile([], 50) == 0


@needs_wrk
def test_every_request_is_signed_and_has_a_fresh_webhook_id(baseline: tuple[str, list[str]], tmp_path: Path):
    url, seen = baseline
    load = deliveries("delayed", 50, SECRET, 5_300_000_000_000)
    result = wrk.run(
        "closed",
        url,
        load,
        topic="fulfillment_events/create",
        shop="s.myshopify.com",
        duration=1,
        work_dir=tmp_path,
    )
    assert result.requests > 20
    assert result.errors == {}  # a wrong HMAC would be a 401, counted as a status error
    assert len(seen) >= result.requests
    assert len(set(seen)) == len(seen)


@needs_wrk
def test_a_bad_signature_shows_as_errors(baseline: tuple[str, list[str]], tmp_path: Path):
    url, _ = baseline
    load = deliveries("delayed", 5, "another-secret", 5_300_000_000_000)
    result = wrk.run(
        "unsigned",
        url,
        load,
        topic="fulfillment_events/create",
        shop="s.myshopify.com",
        duration=1,
        work_dir=tmp_path,
    )
    assert result.errors.get("status") == result.requests > 0


@needs_wrk
def test_paced_mode_keeps_to_its_rate(baseline: tuple[str, list[str]], tmp_path: Path):
    url, _ = baseline
    load = deliveries("in_transit", 20, SECRET, 5_400_000_000_000)
    result = wrk.run(
        "paced",
        url,
        load,
        topic="fulfillment_events/create",
        shop="s.myshopify.com",
        duration=2,
        work_dir=tmp_path,
        connections=4,
        rate=40,
    )
    assert 50 <= result.requests <= 110  # 40/s for 2 s, give or take start-up
    assert result.errors == {}
    assert 0 < result.p50_ms <= result.p99_ms
    assert result.target_rate == 40
