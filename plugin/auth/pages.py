"""The pages the install and authentication flows answer with: a refusal says what is wrong
and what to do; an install that must leave the admin's iframe does so through App Bridge."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from plugin.errors import AuthError, InstallRequiredError, SessionTokenExpiredError
from plugin.services import Services

TITLES = {
    400: "Amends cannot continue",
    401: "Amends could not verify this request",
    502: "Shopify could not be reached",
    503: "Please try again",
}


def message(status: int, text: str, detail: str = "", install_form: bool = False) -> Response:
    body = render_template(
        "auth/message.html",
        title=TITLES.get(status, "Amends cannot continue"),
        message=text,
        detail=detail,
        install_form=install_form,
        shop=request.args.get("shop", "")[:255],
    )
    return Response(body, status=status, mimetype="text/html")


def refusal(error: AuthError) -> Response:
    """The answer to a refused page load of the app home."""
    embedded = request.args.get("embedded") == "1"
    if isinstance(error, InstallRequiredError):
        if embedded:
            return _app_bridge_page("auth/exit_iframe.html", location=error.location)
        return redirect(error.location)
    if isinstance(error, SessionTokenExpiredError) and embedded and request.args.get("shop"):
        # Let App Bridge fetch a fresh session token and load this page again with it.
        reload = (
            request.path
            + "?"
            + urlencode([(k, v) for k, v in request.args.items(multi=True) if k != "id_token"])
        )
        bounce_query = {
            "shop": request.args["shop"],
            "host": request.args.get("host", ""),
            "shopify-reload": reload,
        }
        target = url_for("auth.session_token") + "?" + urlencode(bounce_query)
        return redirect(target)
    return message(error.status if error.status in TITLES else 401, error.reason)


def bounce() -> Response:
    return _app_bridge_page("auth/bounce.html")


def _app_bridge_page(template: str, **context: str) -> Response:
    services: Services = current_app.extensions["amends"]
    body = render_template(template, api_key=services.config.shopify_api_key, **context)
    return Response(body, status=200, mimetype="text/html")
