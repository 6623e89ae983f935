"""The authorization-code install: GET /auth/install starts it, GET /auth/callback ends it.

/auth/install checks the shop domain, keeps a `state` nonce in a signed cookie and sends the
browser to Shopify's authorize page. /auth/callback checks the query HMAC, the timestamp, the
state against the cookie and the shop, then trades the code for an expiring offline token pair
(`expiring=1`), records the install and sends the merchant into the app. Any failure answers
a page saying what went wrong (400 or 401; 502 when Shopify cannot be reached) and stores
nothing. Log lines name the shop and the reason, never a code, token, HMAC or secret.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from urllib.parse import urlencode

from flask import Blueprint, current_app, g, redirect, request
from werkzeug.wrappers import Response

from plugin.auth import grants, installs, pages, query, state
from plugin.auth.shops import valid_shop_domain
from plugin.config import Config
from plugin.errors import TokenGrantError, TokenGrantRetryableError
from plugin.services import Services

log = logging.getLogger(__name__)

blueprint = Blueprint("auth", __name__)

CALLBACK_PARAMS = ("code", "shop", "state", "timestamp", "hmac")
ADMIN_HOST = re.compile(r"^admin\.shopify\.com/store/[a-zA-Z0-9][a-zA-Z0-9-]*$")


@blueprint.get("/auth/install")
def install() -> Response:
    config = _services().config
    raw = request.args.get("shop", "")
    shop = raw.strip().lower()
    if not shop:
        return pages.message(400, "Enter your store's address to install Amends.", install_form=True)
    if not valid_shop_domain(shop):
        log.info("install refused: %r is not a shop domain", raw[:100])
        return pages.message(
            400,
            f"“{raw[:100]}” is not a Shopify store address.",
            "Use your store's myshopify.com address, for example your-store.myshopify.com: "
            "letters, digits and hyphens, not starting with a hyphen.",
            install_form=True,
        )
    held = state.State(nonce=state.new_nonce(), shop=shop)
    response: Response = redirect(authorize_url(config, shop, held.nonce))
    state.set_cookie(response, config, held)
    log.info("install started for shop %s", shop)
    return response


@blueprint.get("/auth/callback")
def callback() -> Response:
    services = _services()
    config = services.config
    verdict = query.verify(request.args, config.webhook_secrets, required=CALLBACK_PARAMS)
    if isinstance(verdict, query.Signed):
        held = state.read_cookie(request.cookies.get(state.COOKIE), config)
        if held is None:
            verdict = query.Refused("missing_state", "the state cookie is missing or expired")
        elif not state.matches(held, request.args["state"], verdict.shop):
            verdict = query.Refused("state_mismatch")
    if isinstance(verdict, query.Refused):
        log.warning(
            "install callback refused for shop %r: %s %s",
            request.args.get("shop", "")[:100],
            verdict.reason,
            verdict.detail,
        )
        response = pages.message(verdict.status, verdict.message + ".", _advice(verdict), install_form=True)
        state.clear_cookie(response, config)
        return response

    shop = verdict.shop
    try:
        granted = grants.authorization_code(config, shop, request.args["code"])
    except TokenGrantRetryableError:
        return pages.message(502, "Shopify could not be reached to finish the install.", "Please try again.")
    except TokenGrantError as error:
        response = pages.message(
            401,
            "Shopify refused to finish the install.",
            f"The authorization code was not accepted ({error.code or error.status}); "
            "it may have been used already. Start the install again.",
            install_form=True,
        )
        state.clear_cookie(response, config)
        return response
    installs.record_install(services, shop, granted, via=installs.OAUTH)
    response = redirect(app_home_url(config, shop, request.args.get("host")))
    state.clear_cookie(response, config)
    return response


@blueprint.get("/auth/session-token")
def session_token() -> Response:
    """App Bridge's bounce page: it reloads `shopify-reload` with a fresh id_token."""
    shop = (request.args.get("shop") or "").strip().lower()
    if valid_shop_domain(shop):
        g.csp_shop = shop  # it is shown inside that shop's admin
    return pages.bounce()


def authorize_url(config: Config, shop: str, nonce: str) -> str:
    params = {
        "client_id": config.shopify_api_key,
        "scope": ",".join(config.scopes),
        "redirect_uri": f"{config.app_url}/auth/callback",
        "state": nonce,
    }
    base = config.shopify_admin_base.replace("{shop}", shop)
    return f"{base}/admin/oauth/authorize?{urlencode(params)}"


def app_home_url(config: Config, shop: str, host: str | None) -> str:
    """The app inside the shop's admin; `host` (base64 of the admin's address) when valid."""
    admin = f"admin.shopify.com/store/{shop.removesuffix('.myshopify.com')}"
    if host:
        try:
            decoded = base64.urlsafe_b64decode(host + "=" * (-len(host) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            decoded = ""
        if ADMIN_HOST.match(decoded):
            admin = decoded
    return f"https://{admin}/apps/{config.shopify_api_key}"


def _advice(verdict: query.Refused) -> str:
    if verdict.reason in ("missing_state", "state_mismatch", "bad_timestamp"):
        return "Start the install again from the beginning, in the same browser."
    return verdict.detail


def _services() -> Services:
    services: Services = current_app.extensions["amends"]
    return services
