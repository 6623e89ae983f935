"""The overview: this week's incidents, tasks, codes and what needs attention."""

from __future__ import annotations

from plugin.api import queries
from plugin.api.routes import current_shop, routes, services
from plugin.api.schemas import OverviewOut
from plugin.api.spec import Reply


@routes.operation(
    "GET",
    "/overview",
    summary="Figures for the overview page",
    tag="overview",
    ok=Reply(200, "The figures.", OverviewOut),
)
def get_overview() -> OverviewOut:
    amends = services()
    with amends.db.session() as session:
        return queries.overview(session, current_shop(session), amends.config.dev_login)
