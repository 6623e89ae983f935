"""A page's document load: which shop's admin may frame it, and the shop's proof when
Shopify's admin sends one.

When the Shopify admin loads the app it adds an `id_token` (or a signed query with `hmac`);
`plugin.auth.session.authenticate_document` verifies it and, for a shop without a usable
offline token, performs the token exchange. A load without either (a click on the app's
own navigation inside the iframe) gets the shell: it holds no shop data, and its script asks
App Bridge for a session token for every API call.
"""

from __future__ import annotations

import logging

from flask import g, request
from werkzeug.wrappers import Response

from plugin.auth.pages import refusal
from plugin.auth.session import authenticate_document
from plugin.auth.shops import valid_shop_domain
from plugin.errors import AuthError
from plugin.services import Services

log = logging.getLogger(__name__)


def check(services: Services) -> Response | None:
    """None to serve the page (with `g.csp_shop` set when a shop may frame it), or the
    refusal to answer instead (an error page, a bounce for a fresh token, an install)."""
    args = request.args
    if args.get("id_token") or args.get("hmac") or services.config.dev_login:
        try:
            authenticate_document()
        except AuthError as error:
            log.info("page load refused: %s", error.reason)
            return refusal(error)
        return None
    shop = (args.get("shop") or "").strip().lower()
    if valid_shop_domain(shop):
        g.csp_shop = shop
    return None
