"""GET /healthz: is the database reachable, is the queue reachable."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from plugin.services import Services

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> ResponseReturnValue:
    services: Services = current_app.extensions["amends"]
    database = _check(services.db.ping)
    database["engine"] = services.db.dialect
    queue = _check(services.queue.ping)
    queue["kind"] = services.queue.kind
    healthy = database["ok"] and queue["ok"]
    body = {"status": "ok" if healthy else "unavailable", "database": database, "queue": queue}
    return jsonify(body), 200 if healthy else 503


def _check(probe: object) -> dict:
    try:
        probe()  # type: ignore[operator]
    except Exception as error:
        # The class name says what failed without echoing connection strings.
        return {"ok": False, "error": f"{type(error).__name__}: {_first_line(error)}"}
    return {"ok": True}


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else ""
