"""The admin API's blueprint and its one route table (every view module registers here)."""

from __future__ import annotations

from flask import Blueprint, current_app, g
from sqlalchemy.orm import Session

from plugin.api.spec import RouteTable
from plugin.models import Shop
from plugin.services import Services

blueprint = Blueprint("api", __name__, url_prefix="/api")
routes = RouteTable(blueprint, "/api")


def services() -> Services:
    amends: Services = current_app.extensions["amends"]
    return amends


def current_shop(session: Session) -> Shop:
    """The shop `require_shop` authenticated, in this unit of work."""
    shop = session.get(Shop, g.shop_id)
    assert shop is not None  # require_shop found it installed a moment ago
    return shop


def staff() -> str:
    """Who acts, for the timeline."""
    return "staff"
