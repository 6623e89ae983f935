"""The admin's pages as documents: shells with App Bridge, labelled forms, the right
frame-ancestors, no shop data in the HTML, and the document-load check of Shopify's id_token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import Flask

from plugin.admin import APP_BRIDGE_URL
from plugin.config import PROJECT_ROOT
from plugin.demo import ensure_demo_shop
from tests import services as real
from tests.admin_data import seed_incident, session_token
from tests.conftest import API_KEY, make_config
from tests.factories import SHOP, make_shop
from wsgi import create_app

PAGES = [
    "/",
    "/incidents",
    "/incidents/1",
    "/tasks",
    "/settings",
    "/settings/late_delivery",
    "/settings/return",
    "/settings/refund",
    "/outbox",
    "/data-requests",
]


class Document(HTMLParser):
    """The parts of a page the tests look at."""

    def __init__(self, html: str):
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str | None] = []
        self.labels_for: set[str] = set()
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.elements.append((tag, attributes))
        if tag == "script":
            self.scripts.append(attributes.get("src"))
        if tag == "label" and attributes.get("for"):
            self.labels_for.add(str(attributes["for"]))

    def controls(self) -> list[dict[str, str | None]]:
        return [
            attrs
            for tag, attrs in self.elements
            if tag in ("input", "select", "textarea") and attrs.get("type") != "hidden"
        ]


@pytest.fixture
def dev_app(database_url: str) -> Iterator[Flask]:
    app = create_app(make_config(database_url, env="development", shopify_credentials_set=False))
    services = app.extensions["amends"]
    real.empty_tables(services.db.engine)
    ensure_demo_shop(services)
    yield app
    services.close()


@pytest.mark.parametrize("path", PAGES)
def test_dev_mode_pages_open_for_the_demo_shop_without_app_bridge(dev_app, path):
    response = dev_app.test_client().get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    page = Document(response.get_data(as_text=True))
    assert ("meta", {"name": "shopify-api-key", "content": API_KEY}) in page.elements
    assert APP_BRIDGE_URL not in page.scripts  # outside the Shopify admin it has nothing to talk to
    assert "/static/js/core.js" in page.scripts
    assert "Dev mode." in response.get_data(as_text=True)
    current = [attrs for tag, attrs in page.elements if tag == "a" and attrs.get("aria-current") == "page"]
    assert current, "the navigation marks the current page"


@pytest.mark.parametrize("path", PAGES)
def test_embedded_pages_load_app_bridge_first_and_hold_no_shop_data(client, services, path):
    make_shop(services)
    seed_incident(services, SHOP, order_name="#1001", email="ada.secret@example.test", first_name="Ada")
    response = client.get(path, query_string={"shop": SHOP, "embedded": "1", "host": "YWRtaW4"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    page = Document(html)
    assert page.scripts[0] == APP_BRIDGE_URL, "App Bridge must be the first script"
    assert ("meta", {"name": "shopify-api-key", "content": API_KEY}) in page.elements
    assert response.headers["Content-Security-Policy"] == (
        f"frame-ancestors https://{SHOP} https://admin.shopify.com;"
    )
    for secret in ("ada.secret@example.test", "#1001", "Calm Coffee"):
        assert secret not in html
    assert "Dev mode." not in html


@pytest.mark.parametrize(
    "shop",
    ["", "evil.com", "calm-coffee.myshopify.com.evil.com", "-x.myshopify.com", "a b.myshopify.com"],
)
def test_a_page_without_a_valid_shop_may_not_be_framed(client, shop):
    response = client.get("/", query_string={"shop": shop} if shop else {})
    assert response.status_code == 200  # the shell only; its API calls need a session token
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none';"


def test_the_first_load_with_a_valid_id_token_names_its_shop(client, services):
    make_shop(services)
    response = client.get("/", query_string={"id_token": session_token(SHOP), "embedded": "1"})
    assert response.status_code == 200
    assert f"https://{SHOP} " in response.headers["Content-Security-Policy"]


def test_the_first_load_with_a_forged_id_token_is_refused(client, services):
    make_shop(services)
    forged = session_token(SHOP, secret="f" * 40)
    response = client.get("/", query_string={"id_token": forged, "shop": SHOP})
    assert response.status_code == 401
    assert "#1001" not in response.get_data(as_text=True)


def test_an_expired_id_token_bounces_to_app_bridge_for_a_fresh_one(client, services):
    make_shop(services)
    expired = session_token(SHOP, expires_in=-300)
    response = client.get(
        "/incidents", query_string={"id_token": expired, "shop": SHOP, "embedded": "1", "host": "YWRtaW4"}
    )
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/session-token?")
    assert "shopify-reload=%2Fincidents" in response.headers["Location"]


def test_unknown_settings_section_is_404(dev_app):
    assert dev_app.test_client().get("/settings/lost_parcel").status_code == 404


@pytest.mark.parametrize("path", ["/settings", "/settings/late_delivery", "/incidents", "/settings/refund"])
def test_every_form_control_has_a_label(dev_app, path):
    page = Document(dev_app.test_client().get(path).get_data(as_text=True))
    controls = page.controls()
    assert controls
    for attrs in controls:
        assert attrs.get("id") in page.labels_for, f"{attrs.get('name')} has no <label for>"


def test_error_slots_are_announced_with_their_field(dev_app):
    html = dev_app.test_client().get("/settings/late_delivery").get_data(as_text=True)
    page = Document(html)
    for attrs in page.controls():
        described = (attrs.get("aria-describedby") or "").split()
        assert f"err-{attrs['name']}" in described, attrs["name"]


def test_static_assets_are_served(dev_app):
    client = dev_app.test_client()
    for name in ("admin.css", "js/core.js", "js/settings.js", "js/tasks.js"):
        response = client.get(f"/static/{name}")
        response.close()  # a file response streams until closed
        assert response.status_code == 200, name


# --- escaping, by construction ---------------------------------------------------------


def test_admin_templates_never_mark_anything_safe():
    for path in (PROJECT_ROOT / "templates" / "admin").glob("*.html"):
        text = path.read_text()
        assert not re.search(r"\|\s*safe\b", text), path.name
        assert "autoescape false" not in text, path.name


def test_page_scripts_only_ever_insert_text():
    """Data from the API reaches the DOM as text nodes and attributes, never as markup."""
    scripts = list(Path(PROJECT_ROOT / "plugin" / "static" / "js").glob("*.js"))
    assert len(scripts) >= 7
    for path in scripts:
        text = path.read_text()
        for sink in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ):
            assert sink not in text, f"{path.name} uses {sink}"


def test_rendered_emails_only_appear_in_sandboxed_frames():
    for path in Path(PROJECT_ROOT / "plugin" / "static" / "js").glob("*.js"):
        text = path.read_text()
        for match in re.finditer(r'el\("iframe", \{', text):
            line = text[match.end() : text.index("\n", match.end())]
            assert 'sandbox: ""' in line, path.name
    template = (PROJECT_ROOT / "templates" / "admin" / "settings_kind.html").read_text()
    assert re.search(r'<iframe id="preview-html"[^>]*sandbox=""', template)
