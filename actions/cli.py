"""`amends scan`: run the late-delivery scan now, for one shop or every installed one."""

from __future__ import annotations

import click
from sqlalchemy import select

from actions.scan import ScanReport, scan_shop
from plugin.cli import load_config
from plugin.errors import AppError
from plugin.models import Shop
from plugin.queue import EmbeddedQueue
from plugin.shopify.fulfillments import Page


@click.command("scan")
@click.option("--shop", "domain", default=None, help="Only this shop (name.myshopify.com).")
def scan(domain: str | None) -> None:
    """Scan open shipments now and open late-delivery incidents, with a summary."""
    from plugin import services

    config = load_config()
    svc = services.init(config)
    try:
        with svc.db.session() as session:
            query = select(Shop.id, Shop.domain).where(
                Shop.installed_at.is_not(None), Shop.uninstalled_at.is_(None)
            )
            if domain:
                query = query.where(Shop.domain == domain.strip().lower())
            shops = session.execute(query.order_by(Shop.domain)).all()
        if not shops:
            raise click.ClickException(
                f"{domain} is not an installed shop." if domain else "No shop has installed Amends."
            )

        reports: list[ScanReport] = []
        with click.progressbar(
            length=len(shops), label="Scanning", item_show_func=lambda s: s, show_pos=True
        ) as bar:
            for shop_id, shop_domain in shops:

                def on_page(report: ScanReport, _page: Page, name: str = shop_domain) -> None:
                    bar.current_item = f"{name}: page {report.pages}, {report.late} late"
                    bar.render_progress()

                bar.current_item = shop_domain
                try:
                    reports.append(scan_shop(svc, shop_id, on_page=on_page))
                except AppError as error:
                    reports.append(ScanReport(shop=shop_domain, run_id=0, error=str(error)))
                bar.update(1)
        if isinstance(svc.queue, EmbeddedQueue):
            svc.queue.wait_idle(60)  # let the jobs the scan enqueued run before exiting
        _summary(reports)
        if any(r.error for r in reports):
            raise SystemExit(1)
    finally:
        svc.close()


def _summary(reports: list[ScanReport]) -> None:
    click.echo()
    header = f"{'shop':<40} {'pages':>5} {'open':>6} {'late':>5} {'incidents':>9} {'points':>7}"
    click.echo(header)
    click.echo("-" * len(header))
    for r in reports:
        line = f"{r.shop:<40} {r.pages:>5} {r.shipments:>6} {r.late:>5} {r.opened:>9} {r.points:>7.0f}"
        click.echo(line + (f"  error: {r.error}" if r.error else ""))
    click.echo("-" * len(header))
    total = f"{'total':<40} {sum(r.pages for r in reports):>5} {sum(r.shipments for r in reports):>6} "
    total += f"{sum(r.late for r in reports):>5} {sum(r.opened for r in reports):>9} "
    total += f"{sum(r.points for r in reports):>7.0f}"
    click.echo(total)
