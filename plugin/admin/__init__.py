"""The merchant admin: the app home `/` and its pages, embedded in the Shopify admin.

Each page is a shell with its headings, labelled forms and empty tables; its script fills it
from the JSON API under /api/, sending App Bridge's session token (`shopify.idToken()`) as
`Authorization: Bearer`. The shell holds no shop data, so it needs no session of its own
(embedded apps get no third-party cookies), and it stays usable when App Bridge's script
cannot load: in dev mode the API opens the demo shop without a token.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, abort, current_app, render_template
from flask.typing import ResponseReturnValue

from plugin.admin import document_load
from plugin.services import Services

blueprint = Blueprint("admin", __name__)

APP_BRIDGE_URL = "https://cdn.shopify.com/shopifycloud/app-bridge.js"

# (endpoint, label): the admin's navigation, in order; the Shopify admin shows it too.
NAVIGATION = (
    ("admin.overview", "Overview"),
    ("admin.incidents", "Incidents"),
    ("admin.tasks", "Tasks"),
    ("admin.settings", "Settings"),
    ("admin.outbox", "Outbox"),
    ("admin.data_requests", "Data requests"),
)
KIND_LABELS = {"late_delivery": "Late delivery", "return": "Return", "refund": "Refund"}


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)


def _page(template: str, section: str, title: str, **context: Any) -> ResponseReturnValue:
    services: Services = current_app.extensions["amends"]
    config = services.config
    refusal = document_load.check(services)
    if refusal is not None:
        return refusal
    response = current_app.make_response(
        render_template(
            template,
            section=section,
            title=title,
            api_key=config.shopify_api_key,
            # Outside the Shopify admin (dev mode) App Bridge has nothing to talk to.
            app_bridge_url=None if config.dev_login else APP_BRIDGE_URL,
            dev_mode=config.dev_login,
            navigation=NAVIGATION,
            kind_labels=KIND_LABELS,
            **context,
        )
    )
    # Pages are shells: nothing shop-specific to cache or leak, but always fetch the current one.
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.get("/")
def overview() -> ResponseReturnValue:
    return _page("admin/overview.html", "admin.overview", "Overview")


@blueprint.get("/incidents")
def incidents() -> ResponseReturnValue:
    return _page("admin/incidents.html", "admin.incidents", "Incidents")


@blueprint.get("/incidents/<int:incident_id>")
def incident(incident_id: int) -> ResponseReturnValue:
    return _page("admin/incident.html", "admin.incidents", "Incident", incident_id=incident_id)


@blueprint.get("/tasks")
def tasks() -> ResponseReturnValue:
    return _page("admin/tasks.html", "admin.tasks", "Tasks")


@blueprint.get("/settings")
def settings() -> ResponseReturnValue:
    return _page("admin/settings_shop.html", "admin.settings", "Settings", settings_tab="shop")


@blueprint.get("/settings/<kind>")
def kind_settings(kind: str) -> ResponseReturnValue:
    if kind not in KIND_LABELS:
        abort(404)
    return _page(
        "admin/settings_kind.html",
        "admin.settings",
        f"{KIND_LABELS[kind]} settings",
        settings_tab=kind,
        kind=kind,
    )


@blueprint.get("/outbox")
def outbox() -> ResponseReturnValue:
    return _page("admin/outbox.html", "admin.outbox", "Outbox")


@blueprint.get("/data-requests")
def data_requests() -> ResponseReturnValue:
    return _page("admin/data_requests.html", "admin.data_requests", "Data requests")
