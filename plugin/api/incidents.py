"""Incidents: the list with filters and cursor pagination, the detail with its whole story,
and the staff actions (resolve, retry a failed step)."""

from __future__ import annotations

from flask import g

from plugin.api import operations, queries
from plugin.api.routes import current_shop, routes, services, staff
from plugin.api.schemas import IncidentDetail, IncidentPage, IncidentQuery, RetryOut
from plugin.api.spec import Reply

NOT_FOUND = {404: "No such incident in this shop."}


@routes.operation(
    "GET",
    "/incidents",
    summary="List incidents, newest first",
    tag="incidents",
    query=IncidentQuery,
    ok=Reply(200, "A page of incidents.", IncidentPage),
)
def list_incidents(query: IncidentQuery) -> IncidentPage:
    with services().db.session() as session:
        rows, cursor = queries.list_incidents(session, g.shop_id, query)
        return IncidentPage(items=[queries.incident_summary(row) for row in rows], next_cursor=cursor)


@routes.operation(
    "GET",
    "/incidents/<int:incident_id>",
    summary="One incident with its timeline, messages as sent, code and task",
    tag="incidents",
    ok=Reply(200, "The incident.", IncidentDetail),
    errors=NOT_FOUND,
)
def get_incident(incident_id: int) -> IncidentDetail:
    with services().db.session() as session:
        incident = queries.get_incident(session, g.shop_id, incident_id)
        return queries.incident_detail(session, current_shop(session), incident)


@routes.operation(
    "POST",
    "/incidents/<int:incident_id>/resolve",
    summary="Resolve an incident (closing its task); the customer is told once committed",
    tag="incidents",
    ok=Reply(200, "The resolved incident.", IncidentDetail),
    errors={**NOT_FOUND, 409: "The incident is already resolved."},
)
def resolve_incident(incident_id: int) -> IncidentDetail:
    amends = services()
    with amends.db.session() as session:
        incident = queries.get_incident(session, g.shop_id, incident_id)
        operations.resolve_incident(session, amends, incident, staff())
        session.flush()
        return queries.incident_detail(session, current_shop(session), incident)


@routes.operation(
    "POST",
    "/incidents/<int:incident_id>/retry",
    summary="Retry the failed steps of an incident that needs attention",
    tag="incidents",
    ok=Reply(202, "The steps were started again.", RetryOut),
    errors={**NOT_FOUND, 409: "Nothing needs attention, or nothing is left to retry."},
)
def retry_incident(incident_id: int) -> RetryOut:
    amends = services()
    with amends.db.session() as session:
        incident = queries.get_incident(session, g.shop_id, incident_id)
        jobs = operations.retry(session, amends, incident, staff())
        session.flush()
        return RetryOut(
            enqueued=jobs, incident=queries.incident_detail(session, current_shop(session), incident)
        )
