"""Merchant email templates: sandboxed, escaped, bounded, checked at save time, previewed."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from plugin import emails, settings
from plugin.emails import check_settings, check_template, render_preview, render_template, sample_context
from plugin.errors import TemplateError
from plugin.models import DiscountCode, Incident, Shop
from tests.factories import make_shop

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ first_name.__class__.__base__.__subclasses__() }}",
    "{{ shop_name.upper.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ config.SECRET_KEY }}",
    "{{ request.environ }}",
    "{{ '{0.__class__}'.format(first_name) }}",
    "{{ '%s' % first_name }}",
    "{{ first_name|attr('__class__') }}",
    "{% for x in range(2) %}{{ loop.__class__ }}{% endfor %}",
    "{% include '/etc/passwd' %}",
    "{% extends 'layout.html' %}",
    "{% set x = shop_name %}{{ x }}",
    "{{ first_name|safe }}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_sandbox_escapes_are_refused_at_save_and_at_send(source):
    with pytest.raises(TemplateError):
        check_template(source, "html")
    with pytest.raises(TemplateError):
        render_template(source, sample_context(), html=True)


@pytest.mark.parametrize(
    "source",
    [
        "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}"
        "{% endfor %}{% endfor %}{% endfor %}",
        "{% for a in range(1000) %}{% for b in range(1000) %}{{ code }}{% endfor %}{% endfor %}",
        "{{ 'x' * 10**9 }}",
        "{% macro f(x) %}{{ f(x ~ x) }}{% endmacro %}{{ f('a') }}",
        "{{ (((10**64)**64)**64)**64 }}",
        "{% for a in range(10**9) %}x{% endfor %}",
    ],
)
def test_templates_that_run_forever_or_grow_without_end_stop_quickly(source):
    started = time.monotonic()
    with pytest.raises(TemplateError):
        render_template(source, sample_context(), html=False)
    assert time.monotonic() - started < 2.0


def test_customer_data_is_escaped_in_html_but_not_in_text():
    context = sample_context(first_name="<script>alert(1)</script>", order_name='#1"><img src=x>')
    html = render_template("<p>Hi {{ first_name }}, {{ order_name }}</p>", context, html=True)
    assert html == "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt;, #1&#34;&gt;&lt;img src=x&gt;</p>"
    text = render_template("Hi {{ first_name }}", context, html=False)
    assert text == "Hi <script>alert(1)</script>"


def test_the_merchants_own_html_is_kept():
    assert render_template('<p style="color:red">{{ code }}</p>', sample_context(), html=True) == (
        '<p style="color:red">7KXF-M3WC-HJ4P</p>'
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("Hi {{ frist_name }}", "unknown variable frist_name"),
        ("Hi {{ first_name", "line 1"),
        ("{% if has_code %}code", "line 1"),
        ("{{ first_name|center(80) }}", "No filter named 'center'"),
        ("{{ code / 0 }}", "TypeError"),
    ],
)
def test_a_broken_template_says_what_is_wrong(source, message):
    with pytest.raises(TemplateError, match=message):
        check_template(source, "text")


def test_an_empty_subject_is_refused():
    with pytest.raises(TemplateError, match="subject is empty"):
        check_template("{% if false %}x{% endif %}", "subject")


def test_every_default_template_passes_its_own_check():
    for kind in emails.KINDS:
        for which in emails.WHICH:
            for part in emails.PARTS:
                check_template(emails.default_source(kind, which, part), part)


def test_settings_save_refuses_a_broken_template_with_its_field(app):
    services = app.extensions["amends"]
    shop = make_shop(services)
    with services.db.session() as session, pytest.raises(settings.SettingsError) as refused:
        settings.save(
            session,
            shop.id,
            {
                "return": {"apology_html": "<p>{{ ''.__class__ }}</p>"},
                "refund": {"fixed_subject": "{{ nope }}"},
            },
        )
    assert set(refused.value.fields) == {"return.apology_html", "refund.fixed_subject"}
    assert "unsafe" in refused.value.fields["return.apology_html"]
    with services.db.session() as session:
        saved = settings.save(session, shop.id, {"return": {"apology_subject": "Sorry, {{ first_name }}"}})
    assert saved.kind("return").apology_subject == "Sorry, {{ first_name }}"


def test_check_settings_reports_nothing_for_defaults():
    assert check_settings(settings.defaults()) == {}


@pytest.mark.parametrize("kind", emails.KINDS)
@pytest.mark.parametrize("which", emails.WHICH)
def test_preview_renders_a_sample_incident(kind, which):
    preview = render_preview(settings.defaults(), kind, which, shop_name="Calm Coffee", currency="EUR")
    assert "#1001" in preview.subject
    assert "Hi Jane," in preview.text and "Calm Coffee" in preview.text
    assert "<html" in preview.html and "Calm Coffee" in preview.html
    assert "7KXF-M3WC-HJ4P" in preview.text


def test_preview_follows_the_settings():
    chosen = settings.parse(
        {
            "refund": {
                "compensation": "fixed_amount",
                "value": "7.5",
                "minimum_order": "30",
                "apology_subject": "So sorry, {{ first_name }}!",
                "apology_text": "{{ discount }} with {{ minimum_order }} minimum, until {{ expires_on }}",
            },
            "late_delivery": {"compensation": "none"},
        }
    )
    preview = render_preview(chosen, "refund", "apology", currency="GBP")
    assert preview.subject == "So sorry, Jane!"
    assert preview.text.startswith("£7.50 off your next order with £30.00 minimum, until ")
    no_code = render_preview(chosen, "late_delivery", "apology")
    assert "7KXF" not in no_code.text and "make up for" not in no_code.text


def test_the_context_of_a_real_incident():
    shop = Shop(domain="calm-coffee.myshopify.com", name="Calm Coffee", email="hi@cc.example", currency="CAD")
    shop.test_mode = False
    incident = Incident(
        kind="refund",
        order_id=1,
        order_name="#1200",
        customer_first_name="  Ana ",
        details={
            "summary": "we refunded part of your order",
            "refunds": {
                "1": {"amount": "12.50", "currency": "CAD"},
                "2": {"amount": "2.5", "currency": "CAD"},
            },
            "order": {
                "shipments": [
                    {"tracking": [{"company": "UPS", "number": "1Z9", "url": "javascript:alert(1)"}]}
                ]
            },
        },
    )
    code = DiscountCode(
        code="7KXF-M3WC-HJ4P",
        compensation="percentage",
        value=Decimal("12.5"),
        currency="CAD",
        ends_at=datetime(2030, 1, 21, tzinfo=UTC),
    )
    context = emails.incident_context(shop=shop, incident=incident, code=code, minimum_order=Decimal("50"))
    assert context["first_name"] == "Ana"
    assert context["refund_amount"] == "$15.00"
    assert context["discount"] == "12.5% off your next order"
    assert context["expires_on"] == "January 21, 2030"
    assert context["minimum_order"] == "$50.00"
    assert context["code_unused"] is True
    assert context["carrier"] == "UPS" and context["tracking_url"] == ""  # only http(s) links
    assert context["what_happened"] == "we refunded part of your order"
    assert set(context) == set(emails.VARIABLES)
