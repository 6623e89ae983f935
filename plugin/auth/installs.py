"""Recording an install: a shop (new, or back after an uninstall) with its granted tokens.

Every way in (OAuth callback, token exchange, the custom-app command) ends here. The work
that needs Shopify (the shop's name and currency, per-shop webhook subscriptions) runs
afterwards in the `after_install` job, never inside the merchant's request.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from plugin import tokens
from plugin.auth.grants import TokenSet
from plugin.db import utcnow
from plugin.jobs import enqueue_after_commit
from plugin.models import Shop
from plugin.services import Services

log = logging.getLogger(__name__)

AFTER_INSTALL = "actions.install.after_install"

OAUTH = "oauth"
TOKEN_EXCHANGE = "token_exchange"  # noqa: S105 - a name, not a secret
CUSTOM_APP = "custom_app"


def record_install(
    services: Services, domain: str, granted: TokenSet, via: str, follow_up: bool = True
) -> Shop:
    """Store the shop and its token pair in one unit of work; a reinstall restores the shop
    (its incidents and settings are still there unless shop/redact has erased them).
    `follow_up` enqueues `after_install` once committed (the caller may run it instead)."""
    for attempt in (1, 2):
        try:
            return _record(services, domain, granted, via, follow_up)
        except IntegrityError:
            # Two first installs of one shop at once: the other inserted the row; update it.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _record(services: Services, domain: str, granted: TokenSet, via: str, follow_up: bool) -> Shop:
    with services.db.session() as session:
        shop = session.scalar(select(Shop).where(Shop.domain == domain))
        if shop is None:
            shop = Shop(domain=domain, test_mode=True, scopes="")
            session.add(shop)
        came_back = shop.uninstalled_at is not None
        if not shop.installed:
            shop.installed_at = utcnow()
            shop.uninstalled_at = None
        shop.installed_via = via
        tokens.store(shop, services.cipher, granted)
        session.flush()
        if follow_up:
            enqueue_after_commit(session, services, AFTER_INSTALL, shop.id)
        missing = missing_scopes(services.config.scopes, shop.scopes)
    log.info(
        "shop %s installed via %s%s%s",
        domain,
        via,
        " (reinstalled)" if came_back else "",
        f"; scopes not granted: {', '.join(missing)}" if missing else "",
    )
    return shop


def missing_scopes(wanted: tuple[str, ...], granted: str) -> list[str]:
    """Scopes Amends asked for that were not granted (write_x implies read_x)."""
    have = {s.strip() for s in granted.split(",") if s.strip()}
    implied = {"read_" + s.removeprefix("write_") for s in have if s.startswith("write_")}
    return [s for s in wanted if s not in have | implied]
