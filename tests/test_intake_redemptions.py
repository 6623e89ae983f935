"""orders/create with an apology code → the redemption recorded on that code's incident."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select

from plugin import codes
from plugin.models import DiscountCode, Incident, Shop
from plugin.models.delivery import DONE, IGNORED
from plugin.models.incident import LATE_DELIVERY
from tests.factories import SHOP
from tests.intake import (
    ORDER_ID,
    deliveries,
    drain,
    intake_events,
    payload,
    post,
)

NEW_ORDER_ID = 5720099887766


def apology_code(services) -> tuple[int, str]:
    """An incident with its apology code, as the apology job leaves them."""
    with services.db.session() as session:
        shop = session.scalar(select(Shop).where(Shop.domain == SHOP))
        incident = Incident(shop_id=shop.id, kind=LATE_DELIVERY, order_id=ORDER_ID, open_key=None, details={})
        session.add(incident)
        session.flush()
        code = codes.derive(services.config.secret_key, incident.id)
        session.add(
            DiscountCode(
                shop_id=shop.id,
                incident_id=incident.id,
                code=code,
                compensation="percentage",
                value=Decimal("10"),
                state="created",
            )
        )
        return incident.id, code


def order_using(code: str, **changes):
    return payload(
        "order_create",
        discount_codes=[{"code": code, "amount": "7.60", "type": "percentage"}],
        **changes,
    )


def discount(services, incident_id: int) -> DiscountCode:
    with services.db.session() as session:
        return session.scalar(select(DiscountCode).where(DiscountCode.incident_id == incident_id))


def test_an_order_using_an_apology_code_is_recorded_on_its_incident(client, services, intake):
    incident_id, code = apology_code(services)
    post(client, "orders/create", order_using(code))
    drain(services)
    row = discount(services, incident_id)
    assert row.redeemed_order_id == NEW_ORDER_ID
    assert row.redeemed_order_name == "#1077"
    assert row.redeemed_amount == Decimal("76.40") and row.redeemed_currency == "USD"
    assert row.redeemed_at == datetime(2026, 10, 20, 19, 2, 11, tzinfo=UTC)
    [entry] = intake_events(services, incident_id)
    assert entry.event == "code_redeemed"
    assert entry.data["discount_amount"] == "7.60"
    assert entry.summary == f"Code {code} used on order #1077 (76.40 USD)"
    assert intake.calls == []  # no Shopify call needed


def test_a_code_typed_in_lower_case_still_counts(client, services, intake):
    incident_id, code = apology_code(services)
    post(client, "orders/create", order_using(code.lower().replace("-", " ")))
    drain(services)
    assert discount(services, incident_id).redeemed_order_id == NEW_ORDER_ID


def test_the_same_order_under_new_webhook_ids_is_recorded_once(client, services, intake):
    incident_id, code = apology_code(services)
    for _ in range(3):
        post(client, "orders/create", order_using(code))
        drain(services)
    assert len(intake_events(services, incident_id)) == 1
    assert [d.state for d in deliveries(services)] == [DONE, IGNORED, IGNORED]


def test_orders_without_an_amends_code_need_no_work(client, services, intake):
    for order in (
        payload("order_create", discount_codes=[]),
        payload(
            "order_create", discount_codes=[{"code": "SUMMER10", "amount": "5.00", "type": "fixed_amount"}]
        ),
    ):
        response = post(client, "orders/create", order)
        assert response.json["result"] == "ignored"
    drain(services)
    assert deliveries(services) == []


def test_a_code_shaped_like_ours_but_unknown_is_ignored(client, services, intake):
    apology_code(services)
    post(client, "orders/create", order_using("7KXF-M3WC-HJ4P"))
    drain(services)
    [delivery] = deliveries(services)
    assert (delivery.state, delivery.reason) == (IGNORED, "no Amends code was used")
