"""The admin in a real browser: Debian's Chromium, headless, driven by Playwright, against
Amends served by a real HTTP server on 127.0.0.1. Nothing leaves 127.0.0.1: every other
request (App Bridge's CDN above all) is aborted and recorded.

Screenshots of each page, wide and in a narrow admin iframe's width, go to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.serving import make_server

from plugin.admin import APP_BRIDGE_URL
from plugin.config import DEV_SHOP, PROJECT_ROOT, Config
from plugin.db import utcnow
from plugin.demo import ensure_demo_shop
from plugin.models import DataExport, Incident, Message, OutboxEmail, Task
from plugin.services import Services
from tests import services as real
from tests.admin_data import seed_incident, session_token
from tests.conftest import make_config
from tests.factories import SHOP, make_shop
from wsgi import create_app

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
WIDE = {"width": 1280, "height": 900}
NARROW = {"width": 400, "height": 800}  # the Shopify admin's iframe on a small laptop or tablet

expect: Any = None  # playwright.sync_api.expect, imported with the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        hint = f"Chromium is not at {CHROMIUM}; install it with: sudo apt-get install chromium"
        if os.environ.get("CI"):
            pytest.fail(hint)
        pytest.skip(hint)
    global expect
    from playwright.sync_api import expect as playwright_expect
    from playwright.sync_api import sync_playwright

    expect = playwright_expect
    expect.set_options(timeout=10_000)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@dataclass
class Live:
    url: str
    services: Services
    blocked: list[str] = field(default_factory=list)


def serve(config: Config, prepare: Callable[[Services], None]) -> Iterator[Live]:
    app: Flask = create_app(config)
    services: Services = app.extensions["amends"]
    real.empty_tables(services.db.engine)
    prepare(services)
    server = make_server("127.0.0.1", real.free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="admin-test-server", daemon=True)
    thread.start()
    try:
        yield Live(url=f"http://127.0.0.1:{server.server_port}", services=services)
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()
        services.close()


def demo_data(services: Services) -> None:
    ensure_demo_shop(services)
    now = utcnow()
    for i in range(30):
        seed_incident(
            services,
            DEV_SHOP,
            kind=("late_delivery", "return", "refund")[i % 3],
            order_name=f"#{1030 + i}",
            first_name=("Ada", "Grace", "Linus")[i % 3],
            email=f"customer{i}@example.test",
            opened_at=now - timedelta(hours=5 * i + 1),
            due_in=timedelta(hours=30 - 3 * i),
        )
    seed_incident(services, DEV_SHOP, order_name="#2001", first_name="Hedy", due_in=timedelta(hours=4))
    with services.db.session() as session:
        shop_id = session.scalar(select(Incident.shop_id).limit(1))
        session.add(
            DataExport(
                shop_id=shop_id,
                customer_email="ada@example.test",
                data_request_id="777",
                payload={"customer": {"email": "ada@example.test"}, "incidents": [{"order_name": "#1030"}]},
            )
        )
    seed_incident(
        services, DEV_SHOP, order_name="#2002", kind="refund", needs_attention="SMTP 550: mailbox unavailable"
    )


@pytest.fixture
def live(database_url: str) -> Iterator[Live]:
    """Dev mode: no Shopify credentials, the demo shop, the in-process queue, the outbox."""
    config = make_config(database_url, env="development", shopify_credentials_set=False)
    yield from serve(config, demo_data)


def new_page(browser: Any, live: Live, viewport: dict[str, int] = WIDE) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport=viewport)
    errors: list[str] = []

    def guard(route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            live.blocked.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())
    return context, page, errors


@pytest.fixture
def page(browser: Any, live: Live) -> Iterator[Any]:
    context, page, errors = new_page(browser, live)
    yield page
    context.close()
    assert errors == [], "the page raised JavaScript errors"
    assert live.blocked == [], "dev mode needs nothing from outside"


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"admin-{name}.png"), full_page=True)


def incident_id(services: Services, order_name: str) -> int:
    with services.db.session() as session:
        return session.scalar(select(Incident.id).where(Incident.order_name == order_name))


# --- the flows ---------------------------------------------------------------------------------


def test_open_the_admin_and_every_page_fits_wide_and_narrow(browser, live):
    pages = {
        "overview": "/",
        "incidents": "/incidents",
        "incident": f"/incidents/{incident_id(live.services, '#2002')}",
        "tasks": "/tasks",
        "settings": "/settings",
        "settings-late-delivery": "/settings/late_delivery",
        "outbox": "/outbox",
        "data-requests": "/data-requests",
    }
    for label, viewport in (("wide", WIDE), ("narrow", NARROW)):
        context, page, errors = new_page(browser, live, viewport)
        page.goto(live.url + "/")
        expect(page.locator("#shop-name")).to_have_text("Amends Demo Store")
        expect(page.locator("#test-mode-banner")).to_be_visible()
        expect(page.locator("#stat-incidents")).to_have_text(re.compile(r"^\d+$"))
        expect(page.locator("#chart svg rect").first).to_be_attached()
        for name, path in pages.items():
            page.goto(live.url + path)
            expect(page.locator("[aria-busy]")).to_have_count(0)
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), (
                f"{name} overflows sideways at {viewport['width']}px"
            )
            shot(page, f"{name}-{label}")
        context.close()
        assert errors == []
    assert live.blocked == []


def test_change_a_setting_and_see_the_preview_change(page, live):
    page.goto(live.url + "/settings/late_delivery")
    subject = page.locator("#preview-subject")
    expect(subject).to_have_text("We're sorry: your order #1001 is running late")
    frame = page.frame_locator("#preview-html")
    expect(frame.locator("body")).to_contain_text("10% off")

    page.get_by_label("Subject").first.fill("Our apologies for {{ order_name }}, {{ first_name }}")
    expect(subject).to_have_text("Our apologies for #1001, Jane")
    page.get_by_label("Value").fill("25")
    expect(frame.locator("body")).to_contain_text("25% off")
    expect(page.locator("#preview-text")).to_contain_text("25% off", use_inner_text=False)

    page.get_by_role("button", name="It's fixed").click()
    expect(subject).to_have_text(re.compile(r"#1001"))
    expect(page.get_by_role("button", name="It's fixed")).to_have_attribute("aria-pressed", "true")
    shot(page, "flow-preview")

    # A template that does not compile says so, next to the preview, as the merchant types.
    page.get_by_label("HTML").first.fill("<p>{{ first_name </p>")
    page.get_by_role("button", name="Apology").click()
    expect(page.locator("#preview-error")).to_contain_text("apology_html")


def test_save_an_invalid_value_and_see_the_field_error(page, live):
    page.goto(live.url + "/settings/late_delivery")
    value = page.get_by_label("Value")
    expect(value).to_have_value("10")
    value.fill("500")
    page.get_by_role("button", name="Save").click()
    error = page.locator("#err-value")
    expect(error).to_be_visible()
    expect(error).to_contain_text("between 1 and 100")
    expect(value).to_have_attribute("aria-invalid", "true")
    expect(value).to_be_focused()
    shot(page, "flow-field-error")

    page.reload()
    expect(page.get_by_label("Value")).to_have_value("10")  # nothing was saved

    page.get_by_label("Value").fill("20")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#toast")).to_have_text("Settings saved.")
    expect(page.locator("#err-value")).to_be_hidden()
    with live.services.db.session() as session:
        from plugin.settings import load

        shop_id = session.scalar(select(Incident.shop_id).limit(1))
        assert str(load(session, shop_id).late_delivery.value) == "20"

    page.goto(live.url + "/settings")
    expect(page.locator("#settings-form")).not_to_have_attribute("aria-busy", "true")
    page.get_by_label("Test address").fill("not an address")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#err-test_address")).to_contain_text("expected format")


def test_find_an_incident_by_order_name(page, live):
    page.goto(live.url + "/incidents")
    rows = page.locator("#incidents-table tbody tr")
    expect(rows).to_have_count(25)
    expect(page.locator("#next-page")).to_be_visible()

    page.get_by_label("Search").fill("#1042")
    page.keyboard.press("Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("#1042")
    assert "q=%231042" in page.url
    shot(page, "flow-search")

    page.get_by_role("link", name="#1042").click()
    expect(page.locator("#incident-title")).to_have_text("#1042: late delivery")
    expect(page.locator("#timeline li")).to_have_count(2)
    expect(page.locator("#code .code-value")).to_have_text(re.compile(r"^SORRY-"))
    frame = page.locator(".message__frame").first
    expect(frame).to_have_attribute("sandbox", "")
    expect(page.frame_locator(".message__frame").first.locator("body")).to_contain_text("Hi Ada")

    page.go_back()
    expect(rows).to_have_count(1)


def test_search_with_the_keyboard_only(page, live):
    page.goto(live.url + "/incidents")
    expect(page.locator("#incidents-table tbody tr")).to_have_count(25)
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "f-q":
            break
    else:
        pytest.fail("the search field cannot be reached with Tab")
    page.keyboard.type("grace")
    page.keyboard.press("Enter")
    expect(page.locator("#incidents-table tbody tr")).to_have_count(10)
    page.keyboard.press("Tab")  # to the kind filter
    assert page.evaluate("document.activeElement.id") == "f-kind"


def test_close_a_task_and_see_the_fixed_notice_in_the_outbox(page, live):
    page.goto(live.url + "/tasks")
    card = page.locator("[data-status=open] .task", has_text="#2001")
    expect(card).to_have_count(1)
    card.get_by_role("button", name="Close task").click()
    expect(page.locator("#toast")).to_contain_text("Task closed")
    expect(page.locator("[data-status=done] .task", has_text="#2001")).to_have_count(1)
    expect(page.locator("[data-status=open] .task", has_text="#2001")).to_have_count(0)

    # The "fixed" job runs in-process (no Redis in dev mode) and the mail lands in the outbox.
    deadline = time.monotonic() + 15
    while True:
        with live.services.db.session() as session:
            sent = session.scalar(select(OutboxEmail).where(OutboxEmail.subject.contains("#2001")))
        if sent is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if sent is None:
        with live.services.db.session() as session:
            incident = session.get(Incident, incident_id(live.services, "#2001"))
            story = [f"{e.event}: {e.summary}" for e in incident.timeline]
            messages = [
                (m.kind, m.state, m.error, m.attempts, m.sending_until)
                for m in session.scalars(select(Message).where(Message.incident_id == incident.id))
            ]
        pytest.fail(f'no "fixed" email in the outbox; timeline: {story}; messages: {messages}')

    page.goto(live.url + "/outbox")
    item = page.locator("#mail-list > li", has_text="#2001")
    expect(item).to_have_count(1)
    expect(item).to_contain_text("Your order #2001 has arrived")
    item.locator("summary").first.click()
    expect(page.frame_locator("#mail-list .message__frame").first.locator("body")).to_contain_text("Hedy")
    shot(page, "flow-fixed-notice")

    with live.services.db.session() as session:
        incident = session.get(Incident, incident_id(live.services, "#2001"))
        task = session.scalar(select(Task).where(Task.incident_id == incident.id))
        assert incident.resolved_at is not None and task.status == "done"
    page.goto(live.url + f"/incidents/{incident.id}")
    expect(page.locator("#timeline")).to_contain_text("Follow-up task closed")


def test_retry_and_resolve_from_the_incident(page, live):
    target = incident_id(live.services, "#2002")
    page.goto(live.url + f"/incidents/{target}")
    expect(page.locator("#attention-reason")).to_have_text("SMTP 550: mailbox unavailable")
    page.get_by_role("button", name="Resolve").click()
    expect(page.locator("#incident-badges")).to_contain_text("Resolved")
    expect(page.locator("#resolve")).to_be_hidden()
    expect(page.locator("#task")).to_contain_text("Done")


def test_download_a_data_request(page, live):
    page.goto(live.url + "/data-requests")
    row = page.locator("#exports tbody tr", has_text="ada@example.test")
    expect(row).to_contain_text("777")
    with page.expect_download() as download_info:
        row.get_by_role("button", name="Download").click()
    download = download_info.value
    assert re.fullmatch(r"amends-data-request-\d+\.json", download.suggested_filename)
    exported = json.loads(Path(download.path()).read_text())
    assert exported["incidents"] == [{"order_name": "#1030"}]


def test_customer_data_is_shown_as_text_never_run(page, live):
    hostile = '<img src=x onerror="window.__pwned=1">'
    seeded = seed_incident(
        live.services,
        DEV_SHOP,
        order_name="#6666<b>",
        first_name=hostile,
        email="eve@example.test",
        html_body="<p>Hello</p><script>parent.__pwned2 = 1; window.__ran = 1;</script>",
        details={"note": "<script>window.__pwned3=1</script>"},
    )
    for path in ("/incidents?q=eve", f"/incidents/{seeded.incident_id}", "/tasks"):
        page.goto(live.url + path)
        expect(page.get_by_text(hostile).filter(visible=True).first).to_be_visible()
        assert page.evaluate("[window.__pwned, window.__pwned2, window.__pwned3]") == [None, None, None]
    page.goto(live.url + f"/incidents/{seeded.incident_id}")
    expect(page.locator("#incident-title")).to_contain_text("#6666<b>")
    expect(page.frame_locator(".message__frame").first.locator("body")).to_contain_text("Hello")
    frame = page.frames[-1]
    assert frame.evaluate("window.__ran") is None  # the sandbox keeps scripts off


# --- embedded: App Bridge's script cannot load here, and the pages still work -------------------


@pytest.fixture
def embedded(database_url: str) -> Iterator[Live]:
    """Production-like: Shopify credentials set, so no dev-mode bypass; the page includes App
    Bridge, which cannot load (the test blocks the CDN)."""

    def prepare(services: Services) -> None:
        make_shop(services, test_mode=True)
        seed_incident(services, SHOP, order_name="#3001")

    yield from serve(make_config(database_url), prepare)


def test_embedded_pages_work_without_the_app_bridge_script(browser, embedded):
    context, page, errors = new_page(browser, embedded)
    # What App Bridge provides, for this test: shopify.idToken() with a fresh session token.
    page.expose_function("mintSessionToken", lambda: session_token(SHOP))
    page.add_init_script("window.shopify = { idToken: () => window.mintSessionToken() };")
    query = f"?shop={SHOP}&embedded=1&host=YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvY2FsbS1jb2ZmZWU"
    response = page.goto(embedded.url + "/" + query + f"&id_token={session_token(SHOP)}")
    assert response.status == 200
    assert f"frame-ancestors https://{SHOP}" in response.headers["content-security-policy"]
    expect(page.locator("#shop-name")).to_have_text("Calm Coffee")
    expect(page.locator("#test-mode-banner")).to_be_visible()

    page.get_by_role("link", name="Incidents").first.click()
    expect(page.locator("#incidents-table tbody tr")).to_have_count(1)
    assert f"shop={SHOP}" in page.url and "host=" in page.url  # App Bridge's parameters kept
    expect(page.get_by_role("link", name="#3001")).to_be_visible()
    shot(page, "embedded-incidents")
    context.close()
    assert errors == []
    assert embedded.blocked and set(embedded.blocked) == {APP_BRIDGE_URL}


def test_without_a_session_token_the_page_says_where_to_open_it(browser, embedded):
    context, page, errors = new_page(browser, embedded)
    page.goto(embedded.url + f"/incidents?shop={SHOP}&embedded=1")
    expect(page.locator("#alerts")).to_contain_text("Open Amends from your Shopify admin")
    expect(page.locator("#incidents-table tbody tr")).to_have_count(0)
    assert "#3001" not in page.content()
    context.close()
    assert errors == []
