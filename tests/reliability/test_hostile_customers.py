"""Customer data with HTML, very long names, right-to-left and emoji text, header injection
and template syntax, from Shopify (the stand-in) through the whole pipeline: the apology
email and the admin show it as text, escaped, without breaking either.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from markupsafe import escape

from tests.admin_data import session_token
from tests.reliability import report
from tests.reliability.deployment import Deployment, artifacts_dir, deploy
from tests.reliability.harness import API_KEY

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"

# name → (first name, last name). Customer emails are ordinary: the names are the attack.
CUSTOMERS: dict[str, tuple[str, str]] = {
    "script": ("<script>window.__pwned=1</script>", "Smith"),
    "attribute_break": ('"><img src=x onerror="window.__pwned=2">', "O'Brien & Sons"),
    "long_words": ("Bartholomew " * 900, "Longfellow"),
    "long_no_spaces": ("W" * 6000, "X" * 3000),
    "arabic": ("مُحَمَّد", "الفلسطيني"),
    "hebrew_with_override": ("שָׁלוֹם\u202egnp.exe", "\u202bכהן\u202c"),
    "emoji": ("Zoë 👩🏽\u200d🚀🎉🇨🇦", "🦄" * 40),
    "header_injection": ("Ann\r\nBcc: victim@evil.example\r\nX-Injected: yes", "Lee\nSubject: spoofed"),
    "template_syntax": ("{{ config }}{% for x in range(9) %}x{% endfor %}", "{{ ''.__class__ }}"),
    "control_characters": ("Nul\u0000Bell\u0007Esc\u001b[31m", "Del\u007f"),
}


class _Elements(HTMLParser):
    """Every element and event-handler attribute an HTML part really has."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "img", "iframe", "object", "embed", "svg"):
            self.found.append(f"<{tag}>")
        for attr, value in attrs:
            if attr.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"{tag}[{attr}]")


def _markup(body: str) -> list[str]:
    parser = _Elements()
    parser.feed(body)
    return parser.found


def _html_part(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    return part.get_content() if part is not None else ""


def _text_part(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    return part.get_content() if part is not None else ""


@pytest.fixture(scope="module")
def hostile_run(reliability_redis: int) -> Iterator[tuple[Deployment, dict[str, int], dict[str, Any]]]:
    with deploy(artifacts_dir("test_hostile_customers"), reliability_redis, workers=2) as d:
        plan = d.plan(len(CUSTOMERS), kinds=["late_delivery"])
        orders = dict(zip(CUSTOMERS, sorted(plan.orders), strict=True))
        for n, (name, order_id) in enumerate(orders.items()):
            first, last = CUSTOMERS[name]
            d.set_customer(order_id, first, last, f"hostile.{name}@customers.example", 7_800_000_000 + n)
        sender = d.sender()
        sender.deliver(plan.webhooks, time.monotonic() + 120)
        out, _ = d.wait(plan, 180)
        yield d, orders, {"outcome": out, "sent": sender.stats}


def test_hostile_customer_data_in_the_apology_email(hostile_run: Any) -> None:
    d, orders, run = hostile_run
    out = run["outcome"]
    section = report.section(
        "Hostile customer data",
        f"{len(CUSTOMERS)} customers from Shopify (the stand-in) named with HTML and script, attribute "
        "breaks, 10,000-character names with and without spaces, Arabic and Hebrew with bidi overrides, "
        "emoji with ZWJ and flags, CR/LF header injection, template syntax, control characters: through "
        "the whole pipeline to the apology email and the admin",
    )
    d.record(section, out)
    by_recipient = {r.to: r for r in d.stack.smtp.snapshot()}
    problems: dict[str, str] = {}
    for name in CUSTOMERS:
        received = by_recipient.get(f"hostile.{name}@customers.example")
        if received is None:
            problems[name] = f"no email ({out.incomplete.get(orders[name], 'complete')})"
            continue
        message = received.message
        body_html, body_text = _html_part(message), _text_part(message)
        markup = _markup(body_html)
        if markup:
            problems[name] = f"markup from the data became HTML: {markup}"
        # No header was injected, and every header is one line.
        if message.get("Bcc") or message.get("X-Injected") or "spoofed" in str(message.get("Subject", "")):
            problems[name] = "a header was injected"
        for header, value in message.items():
            if "\r" in str(value) or "\n" in str(value).strip():
                problems[name] = f"{header} spans lines"
        # The template syntax stayed text: it appears, it did not run.
        if name == "template_syntax" and "{{ config }}" not in body_text:
            problems[name] = "template syntax in the customer's name was not shown as text"
        first = CUSTOMERS[name][0].strip()
        if name in ("script", "attribute_break") and str(escape(first))[:20] not in body_html:
            problems[name] = "the name is not in the HTML part, escaped"
        if len(message.as_bytes()) > 400_000:
            problems[name] = f"the email is {len(message.as_bytes())} bytes"
    section.add(
        **{"emails checked": len(CUSTOMERS) - sum(1 for p in problems.values() if p.startswith("no "))}
    )
    section.add(**{"problems in emails": problems or "none"})
    assert problems == {}, problems


def test_hostile_customer_data_in_the_admin_api(hostile_run: Any) -> None:
    """JSON carries the names as data: each comes back exactly, neither run nor mangled."""
    d, _, _ = hostile_run
    headers = {"Authorization": f"Bearer {_token(d)}"}
    response = requests.get(
        d.stack.base_url + "/api/incidents", headers=headers, timeout=10, params={"limit": 50}
    )
    assert response.status_code == 200, response.text[:300]
    assert response.headers["Content-Type"].startswith("application/json")
    items = response.json()["items"]
    assert len(items) == len(CUSTOMERS)
    seen: list[str] = []
    for item in items:
        detail = requests.get(f"{d.stack.base_url}/api/incidents/{item['id']}", headers=headers, timeout=10)
        assert detail.status_code == 200, detail.text[:300]
        # Markup in a JSON string is data: served as JSON, never sniffed as HTML.
        assert detail.headers["Content-Type"].startswith("application/json")
        assert detail.headers.get("X-Content-Type-Options") == "nosniff"
        seen.extend(_strings(detail.json()))
    for name in ("script", "attribute_break", "arabic", "emoji", "template_syntax"):
        first = CUSTOMERS[name][0]
        assert any(first in value for value in seen), f"{name}: the name did not come back as it was"


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _token(d: Deployment) -> str:
    return session_token(d.shop, secret=d.stack.api_secret, audience=API_KEY)


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="no Chromium")
def test_hostile_customer_data_in_the_admin_pages(hostile_run: Any) -> None:
    from playwright.sync_api import expect, sync_playwright

    d, _, _ = hostile_run
    base = d.stack.base_url
    shots = artifacts_dir("test_hostile_customers_pages")
    overflow: dict[str, int] = {}
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"], headless=True
        )
        try:
            for width in (1280, 400):
                context = browser.new_context(viewport={"width": width, "height": 900})
                context.route(
                    "**/*",
                    lambda route: (
                        route.continue_()
                        if urlsplit(route.request.url).hostname == "127.0.0.1"
                        else route.abort()
                    ),
                )
                page = context.new_page()
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.expose_function("mintSessionToken", lambda: _token(d))
                page.add_init_script("window.shopify = { idToken: () => window.mintSessionToken() };")
                query = f"?shop={d.shop}&embedded=1&id_token={_token(d)}"
                paths = ["/incidents", "/tasks"] + [f"/incidents/{i}" for i in _incident_ids(d)]
                for path in paths:
                    response = page.goto(base + path + query)
                    assert response is not None and response.status == 200, path
                    page.wait_for_load_state("networkidle")
                    expect(page.locator("body")).not_to_be_empty()
                    assert page.evaluate("window.__pwned") is None, f"script ran on {path}"
                    # The page may scroll inside its tables, but the page itself keeps its width.
                    spill = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                    if spill > 16:
                        overflow[f"{path} at {width}px"] = spill
                    page.screenshot(path=str(shots / f"{re.sub(r'[^a-z0-9]+', '-', path)}-{width}.png"))
                context.close()
        finally:
            browser.close()
    section = report.section(
        "Hostile customer data in the admin pages",
        "the incidents list, tasks and every incident page, 1280 px and 400 px wide, in Chromium",
    )
    section.add(**{"JavaScript errors": len(errors), "pages wider than the window": overflow or "none"})
    assert errors == []
    assert overflow == {}, overflow


def _incident_ids(d: Deployment) -> list[int]:
    import sqlalchemy as sa

    with d.engine.connect() as db:
        return [row[0] for row in db.execute(sa.text("SELECT id FROM incidents ORDER BY id"))]
