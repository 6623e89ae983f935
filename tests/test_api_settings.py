"""/api/settings: read, change field by field (422 per field, nothing saved), live preview."""

from __future__ import annotations

import pytest

from plugin import emails
from plugin.models import Shop
from tests.factories import SHOP, make_shop


def test_defaults_with_test_mode_templates_and_variables(admin_api, services):
    make_shop(services, test_mode=True)
    body = admin_api.get("/api/settings").get_json()
    assert body["test_mode"] is True
    assert body["settings"]["late_delivery"]["compensation"] == "percentage"
    assert body["settings"]["return"]["compensation"] == "free_shipping"
    assert body["settings"]["late_delivery"]["apology_subject"] is None
    assert body["default_templates"]["refund"]["apology_subject"] == emails.default_source(
        "refund", "apology", "subject"
    )
    assert "first_name" in body["variables"]


def test_put_changes_only_what_is_sent(admin_api, services):
    response = admin_api.put(
        "/api/settings",
        json={
            "test_mode": False,
            "shop": {"test_address": "qa@calm-coffee.example", "customer_window_days": 14},
            "late_delivery": {
                "value": "25",
                "sla_hours": 8,
                "apology_subject": "Sorry about {{ order_name }}",
            },
        },
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["test_mode"] is False
    assert body["settings"]["late_delivery"]["value"] == "25"
    assert body["settings"]["late_delivery"]["expiry_days"] == 30  # untouched default
    assert body["settings"]["shop"]["customer_window_days"] == 14

    again = admin_api.get("/api/settings").get_json()
    assert again["settings"] == body["settings"]
    assert again["settings"]["late_delivery"]["apology_subject"] == "Sorry about {{ order_name }}"
    with services.db.session() as session:
        assert session.get(Shop, body_shop_id(services)).test_mode is False

    # Test mode back on, nothing else sent: the rest stays.
    on = admin_api.put("/api/settings", json={"test_mode": True}).get_json()
    assert on["test_mode"] is True and on["settings"]["late_delivery"]["sla_hours"] == 8


def body_shop_id(services) -> int:
    from sqlalchemy import select

    with services.db.session() as session:
        return session.scalar(select(Shop.id).where(Shop.domain == SHOP))


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"late_delivery": {"value": 500}}, "late_delivery.value", "between 1 and 100"),
        ({"refund": {"compensation": "fixed_amount", "value": 0}}, "refund.value", "more than 0"),
        ({"return": {"expiry_days": 0}}, "return.expiry_days", "at least 1"),
        ({"late_delivery": {"notify_resolved": 0}}, "late_delivery.notify_resolved", "true or false"),
        ({"late_delivery": {"value": "ten"}}, "late_delivery.value", "expected format"),
        ({"shop": {"tag_orders": "yes"}}, "shop.tag_orders", "true or false"),
        ({"late_delivery": {"compensation": "gift"}}, "late_delivery.compensation", "percentage"),
        ({"shop": {"test_address": "not an address"}}, "shop.test_address", "expected format"),
        ({"shop": {"order_tag": "<b>"}}, "shop.order_tag", "expected format"),
        ({"shop": {"staff_notifications": "hourly"}}, "shop.staff_notifications", "off"),
        ({"late_delivery": {"apology_html": "{{ oops"}}, "late_delivery.apology_html", "line 1"),
        ({"late_delivery": {"apology_text": "{{ ''.__class__.__mro__ }}"}}, "late_delivery.apology_text", ""),
        ({"refund": {"fixed_subject": "{{ secret_key }}"}}, "refund.fixed_subject", "unknown variable"),
        ({"late_delivery": {"colour": "red"}}, "late_delivery.colour", "not a setting"),
        ({"nonsense": 1}, "nonsense", ""),
        ({"test_mode": "yes"}, "test_mode", "true or false"),
        ({"late_delivery": "everything"}, "late_delivery", ""),
    ],
)
def test_invalid_values_are_refused_per_field_and_nothing_is_saved(admin_api, services, body, field, words):
    before = admin_api.get("/api/settings").get_json()
    # A valid change sent alongside the invalid one is not saved either.
    response = admin_api.put("/api/settings", json={**body, "test_mode": body.get("test_mode", False)})
    assert response.status_code == 422
    fields = response.get_json()["fields"]
    assert field in fields, fields
    assert words.lower() in fields[field].lower()
    assert admin_api.get("/api/settings").get_json() == before


def test_a_settings_body_that_is_not_an_object_is_422(admin_api):
    response = admin_api.put("/api/settings", json=[{"test_mode": False}])
    assert response.status_code == 422
    assert response.get_json()["fields"] == {"body": "must be a JSON object"}


def test_preview_renders_the_unsaved_values(admin_api, services):
    make_shop(services, name="Calm Coffee", currency="EUR")
    response = admin_api.post(
        "/api/settings/preview",
        json={
            "kind": "late_delivery",
            "message": "apology",
            "changes": {"apology_subject": "Our apologies for {{ order_name }}", "value": "25"},
        },
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["subject"] == "Our apologies for #1001"
    assert "25%" in body["html"] and "25%" in body["text"]
    assert "Calm Coffee" in body["html"]
    # Nothing was saved.
    assert admin_api.get("/api/settings").get_json()["settings"]["late_delivery"]["apology_subject"] is None


def test_preview_of_the_fixed_notice_and_the_saved_templates(admin_api):
    admin_api.put("/api/settings", json={"refund": {"fixed_subject": "Sorted: {{ order_name }}"}})
    body = admin_api.post("/api/settings/preview", json={"kind": "refund", "message": "fixed"}).get_json()
    assert body["subject"] == "Sorted: #1001"


def test_preview_escapes_what_the_merchant_writes_into_html(admin_api):
    body = admin_api.post(
        "/api/settings/preview",
        json={
            "kind": "return",
            "message": "apology",
            "changes": {"apology_html": "<p>{{ first_name ~ '<script>x</script>' }}</p>"},
        },
    ).get_json()
    assert "<script>x</script>" not in body["html"]
    assert "&lt;script&gt;" in body["html"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"kind": "late_delivery", "message": "apology", "changes": {"apology_html": "{% for %}"}},
            "apology_html",
        ),
        (
            {"kind": "late_delivery", "message": "apology", "changes": {"apology_subject": "   "}},
            "apology_subject",
        ),
        ({"kind": "refund", "message": "fixed", "changes": {"value": -1}}, "refund.value"),
        ({"kind": "lost", "message": "apology"}, "kind"),
        ({"kind": "refund", "message": "hello"}, "message"),
        ({"kind": "refund"}, "message"),
        ({"kind": "refund", "message": "fixed", "changes": "all"}, "changes"),
    ],
)
def test_preview_errors_name_the_field(admin_api, body, field):
    response = admin_api.post("/api/settings/preview", json=body)
    assert response.status_code == 422
    fields = response.get_json()["fields"]
    assert any(name.endswith(field) for name in fields), fields
