"""The outbox: mail that would have gone out, kept locally when no SMTP_URL is set."""

from __future__ import annotations

from flask import g

from plugin.api import queries
from plugin.api.routes import current_shop, routes, services
from plugin.api.schemas import OutboxPage, PageQuery
from plugin.api.spec import Reply


@routes.operation(
    "GET",
    "/outbox",
    summary="Mail kept in the local outbox for this shop, newest first",
    tag="outbox",
    query=PageQuery,
    ok=Reply(200, "A page of the outbox.", OutboxPage),
)
def list_outbox(query: PageQuery) -> OutboxPage:
    amends = services()
    with amends.db.session() as session:
        items, cursor = queries.list_outbox(session, g.shop_id, query.cursor, query.limit)
        return OutboxPage(
            transport="smtp" if amends.config.smtp_url else "outbox",
            test_mode=current_shop(session).test_mode,
            items=items,
            next_cursor=cursor,
        )
