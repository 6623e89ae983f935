"""GET /api/openapi.json: the document built from the route table."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue

from plugin.api.routes import routes
from plugin.api.spec import Reply, openapi_document

_cache: dict[str, Any] = {}


def document() -> dict[str, Any]:
    if "document" not in _cache:
        _cache["document"] = openapi_document(routes.operations, title="Amends admin API", version="1")
    return _cache["document"]


@routes.operation(
    "GET",
    "/openapi.json",
    summary="This document",
    tag="meta",
    ok=Reply(200, "The OpenAPI 3.1 document.", schema={"type": "object"}),
    public=True,
    description="Public: it describes the API and holds no shop's data.",
)
def openapi_json() -> ResponseReturnValue:
    return jsonify(document())
