"""The late-delivery scan: several pages of open shipments from the Admin API (faked with
`responses`), the query checked against Shopify's schema, incidents for the late ones only,
idempotent runs, the points reported, the schedule and the `amends scan` command."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from actions.scan import scan_late_deliveries, schedule_scans
from plugin import settings
from plugin.db import utcnow
from plugin.errors import ShopifyRetryableError
from plugin.models import ScanRun, Shop
from plugin.models.incident import LATE_DELIVERY
from plugin.shopify.fulfillments import OPEN_SHIPMENTS, PAGE_SIZE
from tests.conftest import make_config
from tests.factories import OTHER_SHOP, SHOP, make_shop
from tests.graphql_schema import assert_valid
from tests.intake import context_order, drain, incidents, intake_events, payload, post
from tests.shopify_fake import Call, FakeAdmin
from wsgi import cli

NOW = utcnow()


def iso(delta: timedelta) -> str:
    return (NOW + delta).isoformat().replace("+00:00", "Z")


def fulfillment(fid: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"gid://shopify/Fulfillment/{fid}",
        "status": "SUCCESS",
        "displayStatus": "IN_TRANSIT",
        "estimatedDeliveryAt": None,
        "deliveredAt": None,
        **fields,
    }


def order(order_id: int, *fulfillments: dict[str, Any], promised: str | None = None) -> dict[str, Any]:
    return {
        "id": f"gid://shopify/Order/{order_id}",
        "fulfillments": list(fulfillments),
        "fulfillmentOrders": {"nodes": [{"deliveryMethod": {"maxDeliveryDateTime": promised}}]},
    }


# Three pages, as Shopify would page them. Grace is 24 h (the default).
PAGES = [
    [
        order(1001, fulfillment(11, estimatedDeliveryAt=iso(-timedelta(days=3)))),  # late
        order(
            1002,
            fulfillment(12, estimatedDeliveryAt=iso(-timedelta(days=3)), deliveredAt=iso(-timedelta(days=2))),
        ),
    ],
    [
        order(1003, fulfillment(13), promised=iso(-timedelta(days=2))),  # late against the promise
        order(1004, fulfillment(14, estimatedDeliveryAt=iso(timedelta(days=1)))),  # not due yet
        order(1005, fulfillment(15, estimatedDeliveryAt=iso(-timedelta(hours=12)))),  # inside the grace
    ],
    [
        order(1006, fulfillment(16, status="CANCELLED", estimatedDeliveryAt=iso(-timedelta(days=5)))),
        order(1007, fulfillment(17, displayStatus="DELIVERED", estimatedDeliveryAt=iso(-timedelta(days=5)))),
        order(1008, fulfillment(18)),  # no date at all: cannot be late
    ],
]
PAGE_COSTS = [52.0, 61.0, 47.0]


def script_pages(admin: FakeAdmin, pages: list[list[dict[str, Any]]] = PAGES) -> None:
    answers = iter(range(len(pages)))

    def answer(call: Call) -> tuple[int, dict[str, str], dict[str, Any]]:
        n = next(answers)
        body = {
            "data": {
                "orders": {
                    "pageInfo": {"hasNextPage": n + 1 < len(pages), "endCursor": f"cursor-{n + 1}"},
                    "nodes": pages[n],
                }
            },
            "extensions": {
                "cost": {
                    "requestedQueryCost": 502,
                    "actualQueryCost": PAGE_COSTS[n % len(PAGE_COSTS)],
                    "throttleStatus": {
                        "maximumAvailable": 2000.0,
                        "currentlyAvailable": 1900.0,
                        "restoreRate": 100.0,
                    },
                }
            },
        }
        return 200, {}, body

    admin.fail_next("orders", answer, times=len(pages))


@pytest.fixture
def shop_id(services) -> int:
    return make_shop(services, test_mode=True).id


@pytest.fixture
def admin(shopify, shop_id) -> FakeAdmin:
    fake = FakeAdmin().install(shopify)
    for order_id in (1001, 1003):
        fake.orders[order_id] = context_order(order_id, name=f"#{order_id}")
    return fake


def test_the_scan_query_fits_the_schema():
    assert_valid(OPEN_SHIPMENTS, {"first": PAGE_SIZE, "after": None, "query": "status:open"})
    assert_valid(OPEN_SHIPMENTS, {"first": PAGE_SIZE, "after": "cursor-1", "query": "status:open"})


def test_the_scan_pages_through_and_opens_incidents_for_late_shipments_only(services, shop_id, admin):
    script_pages(admin)
    report = scan_late_deliveries(shop_id)
    drain(services)

    pages = admin.of("orders")
    assert [c.variables["after"] for c in pages] == [None, "cursor-1", "cursor-2"]
    for call in pages:
        assert call.variables["first"] == PAGE_SIZE
        query = call.variables["query"]
        assert "status:open" in query and "fulfillment_status:shipped" in query
        assert f"created_at:>={(NOW - timedelta(days=60)).date().isoformat()}" in query
        assert call.token == "shpat_test_token"
        # No customer data, no line items: only what the scan decides with.
        for heavy in ("customer", "lineItems", "email"):
            assert heavy not in call.document

    found = {i.order_id: i for i in incidents(services)}
    assert set(found) == {1001, 1003}
    assert all(i.kind == LATE_DELIVERY and i.is_open for i in found.values())
    assert found[1001].order_name == "#1001" and found[1001].customer_email == "jane@example.test"
    [entry] = intake_events(services, found[1003].id)
    assert entry.source == "scan" and "promised delivery" in entry.summary
    assert "estimated delivery" in intake_events(services, found[1001].id)[0].summary
    assert [c.variables["id"] for c in admin.of("order")] == [
        "gid://shopify/Order/1001",
        "gid://shopify/Order/1003",
    ]

    assert report["pages"] == 3
    assert report["shipments"] == 5  # 12 and 17 delivered, 16 cancelled: not open
    assert (report["late"], report["opened"]) == (2, 2)
    assert report["points"] == sum(PAGE_COSTS) + 2 * 10  # pages + the two order contexts
    with services.db.session() as session:
        [run] = session.scalars(select(ScanRun)).all()
    assert (run.state, run.pages, run.late, run.opened, run.points) == ("done", 3, 2, 2, report["points"])


def test_a_second_scan_opens_nothing_more(services, shop_id, admin):
    script_pages(admin)
    scan_late_deliveries(shop_id)
    drain(services)
    script_pages(admin)
    second = scan_late_deliveries(shop_id)
    drain(services)
    assert (second["late"], second["opened"]) == (2, 0)
    assert len(incidents(services)) == 2
    assert len(admin.of("order")) == 2  # contexts not read again
    for incident in incidents(services):
        assert len(intake_events(services, incident.id)) == 1


def test_a_delivery_after_the_scan_resolves_its_incident(client, services, shop_id, admin):
    script_pages(admin)
    scan_late_deliveries(shop_id)
    drain(services)
    delivered = payload(
        "fulfillment_event_delivered", order_id=1001, fulfillment_id=11, happened_at=NOW.isoformat(), id=77
    )
    post(client, "fulfillment_events/create", delivered)
    drain(services)
    found = {i.order_id: i for i in incidents(services)}
    assert not found[1001].is_open and found[1003].is_open


def test_the_grace_period_comes_from_the_shop_settings(services, shop_id, admin):
    script_pages(admin)
    with services.db.session() as session:
        settings.save(session, shop_id, {"shop": {"scan_grace_hours": 0}})
    admin.orders[1005] = context_order(1005)
    report = scan_late_deliveries(shop_id)
    drain(services)
    assert report["late"] == 3  # 1005, 12 h past its estimate, is late without grace
    assert {i.order_id for i in incidents(services)} == {1001, 1003, 1005}


def test_a_failing_page_fails_the_run_and_keeps_what_it_found(services, shop_id, admin):
    admin.fail_next("orders", _page_with_more(PAGES[0]))
    admin.fail_next("orders", FakeAdmin.server_error(503, retry_after="120"))
    with pytest.raises(ShopifyRetryableError) as raised:
        scan_late_deliveries(shop_id)
    assert raised.value.retry_after == 120  # the queue retries the scan later
    drain(services)
    with services.db.session() as session:
        [run] = session.scalars(select(ScanRun)).all()
    assert run.state == "failed" and "503" in (run.error or "")
    assert (run.pages, run.late, run.opened) == (1, 1, 1)
    assert {i.order_id for i in incidents(services)} == {1001}


def _page_with_more(nodes):
    def answer(call: Call):
        data = {"orders": {"pageInfo": {"hasNextPage": True, "endCursor": "cursor-1"}, "nodes": nodes}}
        return 200, {}, {"data": data}

    return answer


def test_scans_are_scheduled_once_per_interval_for_installed_shops_only(services, shop_id, admin):
    script_pages(admin)
    make_shop(services, domain=OTHER_SHOP, uninstalled_at=utcnow())
    assert schedule_scans() == 1
    assert schedule_scans() == 0  # the same slot is already claimed
    drain(services)
    with services.db.session() as session:
        runs = session.scalars(select(ScanRun)).all()
        installed = session.scalar(select(Shop.id).where(Shop.domain == SHOP))
    assert [(r.shop_id, r.state) for r in runs] == [(installed, "done")]
    assert {i.order_id for i in incidents(services)} == {1001, 1003}


def test_the_scan_command_shows_progress_and_a_summary(services, shop_id, admin, database_url):
    script_pages(admin)
    config = make_config(database_url)
    env = {
        "AMENDS_ENV": "development",
        "DATABASE_URL": database_url,
        "SECRET_KEY": config.secret_key,
        "SHOPIFY_API_SECRET": config.shopify_api_secret,
        "REDIS_URL": "",
    }
    result = CliRunner().invoke(cli, ["scan", "--shop", SHOP], env=env)
    assert result.exit_code == 0, result.output
    assert "Scanning" in result.output
    summary = result.output.splitlines()[-1].split()
    assert summary[:6] == ["total", "3", "5", "2", "2", str(int(sum(PAGE_COSTS) + 20))]
    assert SHOP in result.output
    assert {i.order_id for i in incidents(services)} == {1001, 1003}


def test_the_scan_command_names_an_unknown_shop(services, shop_id, database_url):
    env = {"AMENDS_ENV": "development", "DATABASE_URL": database_url, "REDIS_URL": ""}
    result = CliRunner().invoke(cli, ["scan", "--shop", "nobody.myshopify.com"], env=env)
    assert result.exit_code != 0
    assert "nobody.myshopify.com is not an installed shop" in result.output
