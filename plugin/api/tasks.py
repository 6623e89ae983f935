"""The task board: list, update (assignee, notes, due time), resolve."""

from __future__ import annotations

from flask import g
from sqlalchemy.orm import Session

from plugin.api import operations, queries
from plugin.api.routes import routes, services, staff
from plugin.api.schemas import BoardTask, TaskPage, TaskQuery, TaskUpdate
from plugin.api.spec import Reply
from plugin.db import utcnow
from plugin.models import Task

NOT_FOUND = {404: "No such task in this shop."}


@routes.operation(
    "GET",
    "/tasks",
    summary="List tasks: open work soonest due first, then done",
    tag="tasks",
    query=TaskQuery,
    ok=Reply(200, "A page of tasks.", TaskPage),
)
def list_tasks(query: TaskQuery) -> TaskPage:
    with services().db.session() as session:
        items, cursor = queries.list_tasks(session, g.shop_id, query)
        return TaskPage(items=items, next_cursor=cursor)


@routes.operation(
    "PATCH",
    "/tasks/<int:task_id>",
    summary="Change a task's assignee, notes or due time",
    tag="tasks",
    body=TaskUpdate,
    ok=Reply(200, "The task.", BoardTask),
    errors=NOT_FOUND,
)
def update_task(task_id: int, body: TaskUpdate) -> BoardTask:
    with services().db.session() as session:
        task = queries.get_task(session, g.shop_id, task_id)
        incident = queries.get_incident(session, g.shop_id, task.incident_id)
        operations.update_task(session, task, incident, body, staff())
        return _answer(session, task)


@routes.operation(
    "POST",
    "/tasks/<int:task_id>/resolve",
    summary='Close a task: its incident resolves and the customer gets the "fixed" notice',
    tag="tasks",
    ok=Reply(200, "The closed task.", BoardTask),
    errors={**NOT_FOUND, 409: "The task is already done."},
)
def resolve_task(task_id: int) -> BoardTask:
    amends = services()
    with amends.db.session() as session:
        task = queries.get_task(session, g.shop_id, task_id)
        incident = queries.get_incident(session, g.shop_id, task.incident_id)
        operations.close_task(session, amends, task, incident, staff())
        return _answer(session, task)


def _answer(session: Session, task: Task) -> BoardTask:
    session.flush()
    incident = queries.get_incident(session, g.shop_id, task.incident_id)
    return queries.board_task(task, incident, utcnow())
