"""Token exchange: a verified session token for a shop with no usable offline token becomes
an expiring offline token pair (Shopify-managed install, a reinstall, or a shop that had to
re-authenticate).

A shop already known is exchanged under its token lock, so concurrent first requests from the
admin send one exchange; the others find the stored result. A shop never seen before has no
row to lock yet (without Redis): two simultaneous first loads may both exchange, and the later
stored pair wins; both pairs are valid.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from plugin import tokens
from plugin.auth import grants, installs
from plugin.auth.token_lock import token_lock
from plugin.models import Shop
from plugin.services import Services

log = logging.getLogger(__name__)


def load_shop(services: Services, domain: str) -> Shop | None:
    with services.db.session() as session:
        return session.scalar(select(Shop).where(Shop.domain == domain))


def ensure_offline_token(services: Services, domain: str, session_token: str) -> Shop:
    """The shop with a usable offline token, exchanging `session_token` for one if needed.
    Raises TokenGrantError when Shopify refuses, TokenGrantRetryableError when unreachable."""
    shop = load_shop(services, domain)
    if tokens.usable(shop):
        assert shop is not None
        return shop
    if shop is None and services.redis is None:
        return _exchange(services, domain, session_token)
    with token_lock(services, domain):
        shop = load_shop(services, domain)
        if tokens.usable(shop):
            assert shop is not None
            return shop
        return _exchange(services, domain, session_token)


def _exchange(services: Services, domain: str, session_token: str) -> Shop:
    log.info("shop %s has no usable offline token: exchanging the session token", domain)
    granted = grants.token_exchange(services.config, domain, session_token)
    return installs.record_install(services, domain, granted, via=installs.TOKEN_EXCHANGE)
