"""Order tags after a storm: the tags that waited for the apologies go to Shopify together,
in one bulk mutation (about 20 points), instead of one 10-point `tagsAdd` each.

- `join_batch` (from the deferred tag's job, `tag-<incident>`): an order already in a running
  batch, or a shop with a batch running, needs nothing more (the running batch's end starts
  the next one). With `BULK_MIN` or more tags waiting for the shop, they become a batch;
  with fewer, the caller tags its own order, as before.
- `run_batch` (job `tag-batch-<id>-<round>`) starts the bulk operation, then follows it every
  `POLL_SECONDS`, one job per round: a job of a round that is not the batch's current one
  does nothing, so a sweep re-enqueueing a lost poll can never leave two polling.
- When the operation ends each line's outcome goes on its task and timeline; an order Shopify
  did not answer for is tagged on its own (`tagsAdd`), and a refused one is flagged.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from actions.apology import flag
from plugin.db import utcnow
from plugin.errors import PermanentError, ShopifyAuthError, ShopifyRetryableError, ShopifyUserError
from plugin.incidents import add_timeline
from plugin.models import Incident, OrderTagBatch, Shop, Task
from plugin.models.tag_batch import DONE, FAILED, RUNNING, STARTING, UNFINISHED
from plugin.services import Services, current
from plugin.settings import load
from plugin.shopify import bulk
from plugin.shopify.client import ShopifyClient
from plugin.shopify.orders import order_gid
from plugin.shopify.tags import TAG_ORDER

log = logging.getLogger(__name__)

SOURCE = "job:order_tags"
RUN_BATCH = "actions.order_tags.run_batch"
TAG_LATER = "actions.follow_up.tag_order_later"  # the one name of the deferred-tag job
# Under this many waiting tags, one tagsAdd each (10 points) costs less than a batch's
# ~20 points plus a status query every few seconds.
BULK_MIN = 20
BULK_MAX = 20_000  # lines per operation, far under Shopify's file limit (100 MB)
POLL_SECONDS = 2.0
RECORD_CHUNK = 500  # lines recorded per unit of work


def batch_job_id(batch_id: int, round_: int) -> str:
    return f"tag-batch-{batch_id}-{round_}"


def join_batch(services: Services, incident_id: int) -> bool:
    """True when the incident's order tag is, or will be, added by a bulk operation."""
    with services.db.session() as session:
        task = session.scalar(select(Task).where(Task.incident_id == incident_id))
        if task is None or task.order_tagged_at is not None:
            return True
        if task.order_tag_batch_id is not None:
            batch = session.get(OrderTagBatch, task.order_tag_batch_id)
            # A batch that failed or skipped it: tagged on its own.
            return batch is not None and batch.state in UNFINISHED
        batch_id = _new_batch(session, task.shop_id)
        if batch_id is None:
            return _running(session, task.shop_id)
    _enqueue_round(services, batch_id, 0)
    return True


def run_batch(batch_id: int, round_: int = 0) -> None:
    services = current()
    with services.db.session() as session:
        batch = session.get(OrderTagBatch, batch_id)
        if batch is None or batch.state not in UNFINISHED or batch.round != round_:
            return  # finished, or a duplicate of an older round
        shop = session.get(Shop, batch.shop_id)
        if shop is None or not shop.installed:
            _finish(session, batch, FAILED, "the shop has uninstalled Amends")
            return
        batch.checked_at = utcnow()
        state, operation_id, domain, shop_id = batch.state, batch.operation_id, shop.domain, shop.id
        lines = _lines(session, batch) if state == STARTING else []
    client = ShopifyClient(services, domain)

    if state == STARTING:
        if not lines:
            with services.db.session() as session:
                _finish(session, _batch(session, batch_id), DONE, None)
            return
        try:
            operation_id = bulk.start(client, TAG_ORDER, lines)
        except ShopifyUserError as error:
            if "in progress" in str(error).lower():
                # Another bulk mutation of this app runs in the shop (one at a time).
                raise ShopifyRetryableError(str(error), retry_after=30) from error
            _give_up(services, batch_id, str(error))
            return
        except (ShopifyAuthError, PermanentError) as error:
            _give_up(services, batch_id, str(error))
            return
        with services.db.session() as session:
            batch = _batch(session, batch_id)
            batch.operation_id, batch.state = operation_id, RUNNING
        log.info("shop %s: %d order tags in bulk operation %s", domain, len(lines), operation_id)
        _next_round(services, batch_id, round_)
        return

    assert operation_id is not None
    try:
        status = bulk.status(client, operation_id)
        if not status.finished:
            _next_round(services, batch_id, round_)
            return
        url = status.url if status.status == "COMPLETED" else status.partial_url
        outcomes = dict(bulk.results(client, url)) if url else {}
    except (ShopifyAuthError, PermanentError) as error:
        _give_up(services, batch_id, str(error))
        return
    alone = _record(services, batch_id, status, outcomes)
    for incident_id in alone:
        services.queue.enqueue(TAG_LATER, incident_id, False, job_id=f"tag-{incident_id}")
    start_next(services, shop_id)


def start_next(services: Services, shop_id: int) -> None:
    """The tags that came in while the last batch ran: a batch if enough wait, else each on
    its own now (their jobs found the batch running and left them to it)."""
    with services.db.session() as session:
        batch_id = _new_batch(session, shop_id)
        left = [] if batch_id is not None else list(session.scalars(_waiting_incidents(shop_id)))
    if batch_id is not None:
        _enqueue_round(services, batch_id, 0)
        return
    queued = services.queue.waiting([f"tag-{i}" for i in left])
    for incident_id in left:
        if f"tag-{incident_id}" not in queued:  # a job still to come tags it itself
            services.queue.enqueue(TAG_LATER, incident_id, False, job_id=f"tag-{incident_id}")


def _new_batch(session: Session, shop_id: int) -> int | None:
    # The shop's row is the lock: two jobs must not both start a batch for it.
    session.execute(select(Shop.id).where(Shop.id == shop_id).with_for_update())
    if _running(session, shop_id):
        return None
    waiting = list(session.scalars(_waiting_tasks(shop_id, Task.id).limit(BULK_MAX)))
    if len(waiting) < BULK_MIN:
        return None
    batch = OrderTagBatch(shop_id=shop_id, tag=load(session, shop_id).shop.order_tag, task_ids=waiting)
    session.add(batch)
    session.flush()
    session.execute(update(Task).where(Task.id.in_(waiting)).values(order_tag_batch_id=batch.id))
    return batch.id


def _waiting_tasks(shop_id: int, column: Any) -> Select[Any]:
    """The shop's deferred tags that no batch has taken, oldest first."""
    return (
        select(column)
        .where(
            Task.shop_id == shop_id,
            Task.order_tag_deferred_at.is_not(None),
            Task.order_tagged_at.is_(None),
            Task.order_tag_batch_id.is_(None),
        )
        .order_by(Task.id)
    )


def _waiting_incidents(shop_id: int) -> Select[Any]:
    return _waiting_tasks(shop_id, Task.incident_id).limit(BULK_MIN)


def _running(session: Session, shop_id: int) -> bool:
    unfinished = select(func.count(OrderTagBatch.id)).where(
        OrderTagBatch.shop_id == shop_id, OrderTagBatch.state.in_(UNFINISHED)
    )
    return bool(session.scalar(unfinished))


def _lines(session: Session, batch: OrderTagBatch) -> list[dict[str, Any]]:
    orders = dict(
        session.execute(
            select(Task.id, Incident.order_id)
            .join(Incident, Incident.id == Task.incident_id)
            .where(Task.id.in_(batch.task_ids))
        ).all()
    )
    # A task gone since (its shop's data erased) keeps its line, on an order that is not
    # there: the line numbers must still match task_ids.
    return [{"id": order_gid(orders.get(task_id, 0)), "tags": [batch.tag]} for task_id in batch.task_ids]


def _record(
    services: Services, batch_id: int, status: bulk.BulkStatus, outcomes: dict[int, dict[str, Any]]
) -> list[int]:
    """Each line's outcome on its task; returns the incidents to tag on their own. A unit of
    work per RECORD_CHUNK lines keeps a worker's memory flat for a batch of thousands; a job
    stopped midway records the rest on its next round (tagged tasks are skipped)."""
    with services.db.session() as session:
        batch = _batch(session, batch_id)
        task_ids, tag, operation_id = list(batch.task_ids), batch.tag, batch.operation_id
    summary = f'Order tagged "{tag}" in Shopify (one bulk operation for {len(task_ids)} orders).'
    alone: list[int] = []
    for start in range(0, len(task_ids), RECORD_CHUNK):
        chunk = task_ids[start : start + RECORD_CHUNK]
        with services.db.session() as session:
            rows = session.execute(
                select(Task, Incident)
                .join(Incident, Incident.id == Task.incident_id)
                .where(Task.id.in_(chunk))
            ).all()
            found = {task.id: (task, incident) for task, incident in rows}
            now = utcnow()
            for line, task_id in enumerate(chunk, start):
                if task_id not in found or found[task_id][0].order_tagged_at is not None:
                    continue
                task, incident = found[task_id]
                outcome = outcomes.get(line) or {}
                payload = (outcome.get("data") or {}).get("tagsAdd")
                refused = (payload or {}).get("userErrors") or []
                if isinstance(payload, dict) and not refused and not outcome.get("errors"):
                    task.order_tagged_at = now
                    add_timeline(
                        session,
                        incident,
                        "order_tagged",
                        summary,
                        "api:bulkOperationRunMutation",
                        data={"tag": tag, "bulk_operation": operation_id},
                    )
                elif refused:
                    messages = "; ".join(str(e.get("message")) for e in refused)
                    flag(
                        session,
                        incident,
                        f'The order could not be tagged "{tag}" in Shopify: {messages}',
                        SOURCE,
                        "order_tag_failed",
                    )
                else:
                    alone.append(incident.id)
    with services.db.session() as session:
        failed = status.status != "COMPLETED"
        error = (status.error_code or status.status) if failed else None
        _finish(session, _batch(session, batch_id), FAILED if failed else DONE, error)
    log.info("order tag batch %s: %s; %d orders left to tag one by one", batch_id, status.status, len(alone))
    return alone


def _give_up(services: Services, batch_id: int, reason: str) -> None:
    """The operation could not be started: every order in it is tagged on its own."""
    with services.db.session() as session:
        batch = _batch(session, batch_id)
        _finish(session, batch, FAILED, reason)
        incident_ids = list(
            session.scalars(
                select(Task.incident_id).where(Task.id.in_(batch.task_ids), Task.order_tagged_at.is_(None))
            )
        )
    log.warning(
        "order tag batch %s not started (%s): %d orders tagged one by one",
        batch_id,
        reason,
        len(incident_ids),
    )
    for incident_id in incident_ids:
        services.queue.enqueue(TAG_LATER, incident_id, False, job_id=f"tag-{incident_id}")


def _finish(session: Session, batch: OrderTagBatch, state: str, error: str | None) -> None:
    batch.state, batch.error, batch.finished_at = state, error, utcnow()


def _batch(session: Session, batch_id: int) -> OrderTagBatch:
    batch = session.get(OrderTagBatch, batch_id)
    if batch is None:
        raise PermanentError(f"order tag batch {batch_id} is gone")
    return batch


def _next_round(services: Services, batch_id: int, round_: int, delay: float = POLL_SECONDS) -> None:
    """Hand the batch to the next round's job, in `delay` seconds."""
    with services.db.session() as session:
        moved = session.execute(
            update(OrderTagBatch)
            .where(OrderTagBatch.id == batch_id, OrderTagBatch.round == round_)
            .values(round=round_ + 1)
        )
        if not getattr(moved, "rowcount", 0):
            return  # another round took over
    _enqueue_round(services, batch_id, round_ + 1, delay=delay)


def _enqueue_round(services: Services, batch_id: int, round_: int, delay: float = 0.0) -> None:
    try:
        services.queue.enqueue(
            RUN_BATCH,
            batch_id,
            round_,
            job_id=batch_job_id(batch_id, round_),
            delay=timedelta(seconds=delay) if delay else None,
        )
    except Exception as error:  # the queue is down: the incident sweep finds the batch
        log.error(
            "order tag batch %s: could not enqueue round %s (%s)", batch_id, round_, type(error).__name__
        )


def unfinished(session: Session, stale: timedelta) -> list[tuple[int, int]]:
    """(batch, round) of unfinished batches nobody has looked at for `stale`: for the incident
    sweep, which resumes those whose round's job is gone (`resume`)."""
    cutoff = utcnow() - stale
    rows = session.execute(
        select(OrderTagBatch.id, OrderTagBatch.round).where(
            OrderTagBatch.state.in_(UNFINISHED),
            func.coalesce(OrderTagBatch.checked_at, OrderTagBatch.created_at) < cutoff,
        )
    ).all()
    return [(batch_id, round_) for batch_id, round_ in rows]


def resume(services: Services, batches: list[tuple[int, int]]) -> list[int]:
    """The next round of each batch whose current round's job is not waiting (a Redis loss,
    a killed worker); returns their ids."""
    if not batches:
        return []
    waiting = services.queue.waiting([batch_job_id(i, r) for i, r in batches])
    lost = [(i, r) for i, r in batches if batch_job_id(i, r) not in waiting]
    for batch_id, round_ in lost:
        _next_round(services, batch_id, round_, delay=0.0)
    return [i for i, _ in lost]
