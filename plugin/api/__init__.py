"""The admin JSON API under /api/, authenticated with Shopify session tokens.

Every operation is declared in one route table (plugin.api.spec), which also produces the
OpenAPI 3.1 document served at GET /api/openapi.json.
"""

from flask import Flask

import plugin.api.document
import plugin.api.exports
import plugin.api.incidents
import plugin.api.mail
import plugin.api.overview
import plugin.api.shop_settings
import plugin.api.tasks  # noqa: F401 - each view module registers its operations on the table
from plugin.api.routes import blueprint, routes

__all__ = ["blueprint", "init_app", "routes"]


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
