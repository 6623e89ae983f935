"""`amends dev` without a Shopify store: the local stand-in plays the Admin API.

Only in development mode, only when no Shopify credentials (SHOPIFY_API_SECRET) and no
SHOPIFY_ADMIN_BASE_URL are set: a newcomer's `amends trigger late-delivery` then runs the
whole way (order lookup, discount code, email to the outbox) with no internet. Production
never starts it, whatever else is set.
"""

from __future__ import annotations

import logging
from typing import Any

from plugin.config import Config

log = logging.getLogger(__name__)


def wanted(config: Config) -> bool:
    return (
        config.env == "development"
        and not config.shopify_credentials_set
        and config.shopify_admin_base == Config().shopify_admin_base
    )


def start(config: Config) -> tuple[Config, Any | None, str]:
    """(config pointed at a running stand-in, the stand-in, a line for the banner); the
    config comes back unchanged, with no stand-in, where one is not wanted or cannot run."""
    if not wanted(config):
        where = config.shopify_admin_base.replace("{shop}", "<shop>")
        return config, None, f"Admin API at {where}"
    try:
        from plugin.standin import StandIn
    except ImportError as error:  # graphql-core is a development dependency
        log.warning("the Shopify stand-in cannot start: %s", error)
        return config, None, "no stand-in (pip install graphql-core); Admin API calls will fail"
    standin = StandIn(client_id=config.shopify_api_key, client_secret=config.shopify_api_secret).start()
    log.info("Shopify stand-in listening on %s", standin.url)
    return (
        config.with_overrides(shopify_admin_base=standin.admin_base),
        standin,
        f"local stand-in at {standin.url} (statistics at {standin.url}/_stats)",
    )
