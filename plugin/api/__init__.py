"""The admin JSON API under /api/, authenticated with Shopify session tokens.

Every operation is declared in one route table (plugin.api.spec), which also produces the
OpenAPI 3.1 document served at GET /api/openapi.json.
"""

from flask import Flask

from plugin.api import document, exports, incidents, mail, overview, shop_settings, tasks
from plugin.api.routes import blueprint, routes

__all__ = ["blueprint", "init_app", "routes"]

# Imported for their routes: each module registers its operations on the table.
_VIEWS = (document, exports, incidents, mail, overview, shop_settings, tasks)


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
