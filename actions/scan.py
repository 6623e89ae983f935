"""The late-delivery scan: there is no "late" webhook, so each installed shop's open shipments
are paged through on a schedule, and those past their estimated delivery time (else the
checkout's promise) plus the shop's grace period open a late-delivery incident.

- `schedule_scans` (periodic, every few minutes) enqueues `scan_late_deliveries` for each
  installed shop whose interval has passed. The run is claimed first as a `ScanRun` row
  unique on (shop, time slot), so several schedulers never scan a shop twice in one slot.
- `scan_late_deliveries` pages through the shop's open shipments (no transaction is open
  during a Shopify call), applies each late one through the same path as a `delayed` webhook
  (business key "scan:shipment:<id>": one shipment never opens two incidents, whatever the
  number of runs), and records what it found and the query points it used.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from actions.late_delivery import apply_shipment_status
from actions.signals import SessionReader
from plugin import periodic
from plugin.db import utcnow
from plugin.errors import AppError
from plugin.incidents import Signal
from plugin.jobs import enqueue_after_commit
from plugin.models import ScanRun, Shop
from plugin.models.scan import DONE, FAILED, RUNNING
from plugin.services import Services, current
from plugin.settings import load as load_settings
from plugin.shopify.client import ShopifyClient
from plugin.shopify.fulfillments import OpenShipment, Page, open_shipments

log = logging.getLogger(__name__)

SCAN = "actions.scan.scan_late_deliveries"
SCHEDULE_SCANS = "actions.scan.schedule_scans"
SOURCE = "scan"
MAX_PAGES = 400  # 10,000 orders: a bound, so a cursor bug cannot loop forever


@dataclass
class ScanReport:
    shop: str
    run_id: int
    pages: int = 0
    shipments: int = 0
    late: int = 0
    opened: int = 0
    points: float = 0.0
    error: str | None = None

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def schedule_scans() -> int:
    """Enqueue the scans that are due; returns how many."""
    services = current()
    periodic.schedule_next(services, SCHEDULE_SCANS, periodic.SCHEDULE.get(SCHEDULE_SCANS, 300))
    now = utcnow()
    with services.db.session() as session:
        shops = session.scalars(
            select(Shop).where(Shop.installed_at.is_not(None), Shop.uninstalled_at.is_(None))
        ).all()
        due = [
            (shop.id, _slot(now, load_settings(session, shop.id).shop.scan_interval_minutes))
            for shop in shops
        ]
    enqueued = 0
    for shop_id, slot in due:
        try:
            with services.db.session() as session:
                if session.scalar(select(ScanRun.id).where(ScanRun.shop_id == shop_id, ScanRun.slot == slot)):
                    continue
                run = ScanRun(shop_id=shop_id, slot=slot)
                session.add(run)
                session.flush()
                enqueue_after_commit(
                    session, services, SCAN, shop_id, run.id, job_id=f"scan-{shop_id}-{run.id}"
                )
        except IntegrityError:
            continue  # another scheduler claimed this slot a moment ago
        enqueued += 1
    return enqueued


def scan_late_deliveries(shop_id: int, run_id: int | None = None) -> dict[str, object]:
    """The queue's entry point: scan one shop now."""
    return scan_shop(current(), shop_id, run_id).as_json()


def scan_shop(
    services: Services,
    shop_id: int,
    run_id: int | None = None,
    on_page: Callable[[ScanReport, Page], None] | None = None,
) -> ScanReport:
    now = utcnow()
    with services.db.session() as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            raise AppError(f"shop {shop_id} does not exist")
        run = session.get(ScanRun, run_id) if run_id is not None else None
        if run is None:
            run = ScanRun(shop_id=shop_id, slot=f"cli-{uuid.uuid4().hex[:12]}")
            session.add(run)
        run.state = RUNNING
        run.started_at = now
        run.error = None
        session.flush()
        report = ScanReport(shop=shop.domain, run_id=run.id)
        if not shop.installed:
            run.state, run.error, run.finished_at = FAILED, "the shop has not installed Amends", now
            report.error = run.error
            return report
        grace = timedelta(hours=load_settings(session, shop.id).shop.scan_grace_hours)
        domain = shop.domain

    client = ShopifyClient(services, domain)
    cursor: str | None = None
    try:
        while report.pages < MAX_PAGES:
            page = open_shipments(client, now, after=cursor)
            report.pages += 1
            report.shipments += len(page.shipments)
            for shipment in page.shipments:
                if shipment.due is None or now < shipment.due + grace:
                    continue
                report.late += 1
                if _report_late(services, shop_id, shipment, grace, client):
                    report.opened += 1
            report.points = client.points_used
            if on_page is not None:
                on_page(report, page)
            if not page.has_next or not page.cursor:
                break
            cursor = page.cursor
    except Exception as error:
        report.error = f"{type(error).__name__}: {error}"[:1000]
        _save(services, report, FAILED)
        raise
    report.points = client.points_used
    _save(services, report, DONE)
    log.info(
        "scan of %s: %d pages, %d open shipments, %d late, %d incidents changed, %.0f points",
        domain,
        report.pages,
        report.shipments,
        report.late,
        report.opened,
        report.points,
    )
    return report


def _report_late(
    services: Services, shop_id: int, shipment: OpenShipment, grace: timedelta, client: ShopifyClient
) -> bool:
    due = shipment.due
    assert due is not None
    late_since = due + grace
    basis = "estimated delivery" if shipment.estimated_delivery_at else "promised delivery"
    signal = Signal(
        key=f"scan:shipment:{shipment.fulfillment_id}",
        at=late_since,  # when it became late: a delivery after this still resolves it
        source=SOURCE,
        summary=(
            f"Shipment {shipment.fulfillment_id} is past its {basis} "
            f"({due.astimezone(UTC):%Y-%m-%d %H:%M} UTC) plus {_hours(grace)} and not delivered"
        ),
        data={
            "fulfillment_id": shipment.fulfillment_id,
            "display_status": shipment.display_status,
            "due": due.isoformat(),
            "basis": basis,
        },
    )
    info = {"estimated_delivery_at": due.isoformat(), "display_status": shipment.display_status}
    with services.db.session() as session:
        shop = session.get(Shop, shop_id)
        if shop is None or not shop.installed:
            return False
        outcome = apply_shipment_status(
            session,
            services,
            shop,
            SessionReader(session, client, load_settings(session, shop.id).shop.respect_marketing_consent),
            shipment.order_id,
            shipment.fulfillment_id,
            "overdue",
            signal,
            {k: v for k, v in info.items() if v},
        )
    return outcome is None


def _save(services: Services, report: ScanReport, state: str) -> None:
    with services.db.session() as session:
        run = session.get(ScanRun, report.run_id)
        if run is None:
            return
        run.state = state
        run.pages, run.shipments, run.late = report.pages, report.shipments, report.late
        run.opened, run.points, run.error = report.opened, report.points, report.error
        run.finished_at = utcnow()


def _slot(now: datetime, interval_minutes: int) -> str:
    """The start of the interval `now` falls in, e.g. "2026-11-22T13:00" for hourly."""
    seconds = max(1, interval_minutes) * 60
    start = int(now.timestamp()) // seconds * seconds
    return datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M")


def _hours(grace: timedelta) -> str:
    hours = grace.total_seconds() / 3600
    return f"{hours:g} h grace"
