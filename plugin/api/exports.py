"""Data requests: the exports `customers/data_request` produced, to download."""

from __future__ import annotations

import json

from flask import Response, g

from plugin.api import queries
from plugin.api.routes import routes, services
from plugin.api.schemas import ExportList
from plugin.api.spec import Reply


@routes.operation(
    "GET",
    "/data-exports",
    summary="Customer data exports, newest first",
    tag="data requests",
    ok=Reply(200, "The exports.", ExportList),
)
def list_exports() -> ExportList:
    with services().db.session() as session:
        return ExportList(items=queries.list_exports(session, g.shop_id))


@routes.operation(
    "GET",
    "/data-exports/<int:export_id>",
    summary="Download one export as a JSON file",
    tag="data requests",
    ok=Reply(
        200,
        "Everything Amends holds about the customer.",
        schema={"type": "object"},
        headers={"Content-Disposition": {"schema": {"type": "string"}, "description": "attachment"}},
    ),
    errors={404: "No such data request in this shop."},
)
def download_export(export_id: int) -> Response:
    with services().db.session() as session:
        export = queries.get_export(session, g.shop_id, export_id)
        body = json.dumps(export.payload, indent=2, sort_keys=True, default=str)
    return Response(
        body,
        mimetype="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="amends-data-request-{export.id}.json"',
            "Cache-Control": "no-store",
        },
    )
