"""The Flask application factory."""

from __future__ import annotations

from flask import Flask, g, jsonify, request
from flask.sessions import SessionInterface
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from plugin import admin, api, health, logs, services
from plugin.auth import install
from plugin.config import PROJECT_ROOT, Config


def create_app(config: Config | None = None) -> Flask:
    config = config or Config.from_env()
    logs.configure(config.log_level)
    app = Flask(
        __name__,
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "plugin" / "static"),
    )
    app.config.update(
        SECRET_KEY=config.secret_key,
        MAX_CONTENT_LENGTH=max(config.webhook_max_bytes, 2_000_000),
        TESTING=config.env == "test",
    )
    app.session_interface = NoSessions()
    app.extensions["amends"] = services.init(config)
    app.register_blueprint(health.blueprint)
    api.init_app(app)
    admin.init_app(app)
    app.register_blueprint(install.blueprint)
    app.after_request(_security_headers)
    app.register_error_handler(HTTPException, _http_error)
    return app


class NoSessions(SessionInterface):
    """Amends keeps no Flask session: the embedded admin authenticates each call with a session
    token and the install signs its own state cookie (plugin/auth/state.py). Flask's default
    would still build a signing serializer on every request (~20 µs of each webhook)."""

    def open_session(self, app: Flask, request: object) -> None:
        return None  # Flask then gives a NullSession, which refuses writes

    def save_session(self, app: Flask, session: object, response: Response) -> None:
        pass


def _security_headers(response: Response) -> Response:
    # Embedded pages may only be framed by the shop's admin; everything else by nobody.
    if response.mimetype == "text/html":
        shop = getattr(g, "csp_shop", None)
        ancestors = f"https://{shop} https://admin.shopify.com" if shop else "'none'"
        response.headers["Content-Security-Policy"] = f"frame-ancestors {ancestors};"
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    return response


def _http_error(error: HTTPException) -> ResponseReturnValue:
    """Errors answer JSON under /api/ and /webhooks, a short page elsewhere."""
    status = error.code or 500
    if request.path.startswith(("/api/", "/webhooks", "/healthz")):
        response = jsonify({"error": error.name, "message": error.description})
        response.status_code = status
        # Keep what the error says in headers (a 405's Allow, a 429's Retry-After).
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response
    return error
