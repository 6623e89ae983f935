# ruff: noqa: F401, F811 - pytest fixtures imported from tests.actions_support
"""Order tags after a storm: the waiting tags go to Shopify in one bulk mutation, each line's
outcome lands on its own task, and whatever the operation did not do is tagged on its own."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from actions import order_tags
from actions.follow_up import open_follow_up
from actions.incident_sweep import sweep
from plugin import budget
from plugin.db import utcnow
from plugin.models import Incident, OrderTagBatch, Shop, TimelineEntry
from plugin.models.tag_batch import DONE, FAILED, RUNNING
from plugin.worker import run_worker
from tests import services as real
from tests.actions_support import (
    admin,
    events,
    incident,
    mail_app,
    mail_services,
    make_incident,
    queued,
    shop_id,
    task_of,
)

pytestmark = pytest.mark.redis


def storm(services, shop_id: int, count: int) -> list[int]:
    """`count` incidents whose order tag waited: the shop's bucket near empty, as in a storm."""
    with services.db.session() as session:
        shop = session.get(Shop, shop_id)
        assert shop is not None
        domain = shop.domain
    budget.observe(services, domain, available=100.0, maximum=2000.0, restore_rate=100.0)
    incident_ids = [make_incident(services, shop_id) for _ in range(count)]
    for incident_id in incident_ids:
        open_follow_up(incident_id)
    assert all("order_tag_deferred" in events(services, i) for i in incident_ids)
    return incident_ids


def work_until(services, done, seconds: float = 20.0) -> None:
    """Run the queue (and the jobs it schedules for later) until `done()` or the deadline."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run_worker(services, burst=True)
        if done():
            return
        time.sleep(0.3)
    raise AssertionError("the queue did not finish the work in time")


def batches(services) -> list[OrderTagBatch]:
    with services.db.session() as session:
        found = list(session.scalars(select(OrderTagBatch).order_by(OrderTagBatch.id)))
        session.expunge_all()
        return found


def tagged(services, incident_ids: list[int]) -> bool:
    return all(task_of(services, i).order_tagged_at is not None for i in incident_ids)


def test_the_tags_that_waited_go_to_shopify_in_one_bulk_operation(mail_services, admin, shop_id):
    incident_ids = storm(mail_services, shop_id, order_tags.BULK_MIN + 5)

    work_until(mail_services, lambda: tagged(mail_services, incident_ids))

    # One upload and one operation for every order, no tagsAdd call of its own.
    assert admin.of("tagsAdd") == []
    assert len(admin.of("stagedUploadsCreate")) == 1
    [run] = admin.of("bulkOperationRunMutation")
    assert "tagsAdd(id: $id, tags: $tags)" in run.variables["mutation"]
    assert len(admin.of("node")) >= 1  # its status, until it ended
    orders = [incident(mail_services, i).order_id for i in incident_ids]
    assert all(admin.tags[order] == {"amends"} for order in orders)
    [batch] = batches(mail_services)
    assert (batch.state, batch.operation_id, batch.error) == (
        DONE,
        f"gid://shopify/BulkOperation/{run_id(admin)}",
        None,
    )
    with mail_services.db.session() as session:
        entries = session.scalars(
            select(TimelineEntry).where(
                TimelineEntry.incident_id.in_(incident_ids), TimelineEntry.event == "order_tagged"
            )
        ).all()
        assert len(entries) == len(incident_ids)
        assert {e.source for e in entries} == {"api:bulkOperationRunMutation"}
        assert all(f"one bulk operation for {len(incident_ids)} orders" in e.summary for e in entries)


def run_id(admin) -> str:
    [operation] = admin.bulk.values()
    return str(operation["number"])


def test_each_line_counts_for_its_own_order(mail_services, admin, shop_id, monkeypatch):
    """A refused line flags its incident; a line Shopify did not answer is tagged on its own.
    Recorded 7 lines per unit of work here, so lines in later units must still match."""
    monkeypatch.setattr(order_tags, "RECORD_CHUNK", 7)
    incident_ids = storm(mail_services, shop_id, order_tags.BULK_MIN + 2)
    orders = [incident(mail_services, i).order_id for i in incident_ids]
    admin.refuse_tags = {orders[2], orders[16]}
    admin.bulk_answers_lines = False  # only the even lines come back

    def settled() -> bool:
        return all(
            task_of(mail_services, i).order_tagged_at is not None
            or incident(mail_services, i).needs_attention
            for i in incident_ids
        )

    work_until(mail_services, settled)

    for n in (2, 16):  # line 16 is in the third unit of work
        refused = incident(mail_services, incident_ids[n])
        assert "could not be tagged" in (refused.needs_attention or "")
        assert "Order does not exist" in (refused.needs_attention or "")
        assert task_of(mail_services, incident_ids[n]).order_tagged_at is None
    unanswered = [orders[n] for n in range(1, len(orders), 2)]
    singles = [int(c.variables["id"].rsplit("/", 1)[1]) for c in admin.of("tagsAdd")]
    assert sorted(singles) == sorted(unanswered)  # tagged one by one, and only those
    assert tagged(mail_services, [i for n, i in enumerate(incident_ids) if n not in (2, 16)])


def test_an_operation_that_fails_leaves_each_order_to_its_own_tag(mail_services, admin, shop_id):
    incident_ids = storm(mail_services, shop_id, order_tags.BULK_MIN)
    admin.bulk_ends = "FAILED"

    work_until(mail_services, lambda: tagged(mail_services, incident_ids))

    [batch] = batches(mail_services)
    assert (batch.state, batch.error) == (FAILED, "INTERNAL_SERVER_ERROR")
    assert len(admin.of("tagsAdd")) == len(incident_ids)
    assert len(admin.of("bulkOperationRunMutation")) == 1  # no second batch of the same orders


def test_an_operation_shopify_will_not_start_leaves_each_order_to_its_own_tag(mail_services, admin, shop_id):
    incident_ids = storm(mail_services, shop_id, order_tags.BULK_MIN)
    admin.fail_next(
        "bulkOperationRunMutation",
        admin.user_errors("bulkOperationRunMutation", {"message": "Invalid mutation"}),
    )

    work_until(mail_services, lambda: tagged(mail_services, incident_ids))

    [batch] = batches(mail_services)
    assert batch.state == FAILED and "Invalid mutation" in (batch.error or "")
    assert len(admin.of("tagsAdd")) == len(incident_ids)


def test_a_few_waiting_tags_are_added_one_by_one(mail_services, admin, shop_id):
    incident_ids = storm(mail_services, shop_id, 3)

    work_until(mail_services, lambda: tagged(mail_services, incident_ids))

    assert len(admin.of("tagsAdd")) == 3
    assert admin.of("stagedUploadsCreate") == [] and batches(mail_services) == []


def test_tags_that_wait_while_a_batch_runs_go_in_the_next_one(mail_services, admin, shop_id):
    first = storm(mail_services, shop_id, order_tags.BULK_MIN)
    admin.bulk_polls_before_done = 3
    run_worker(mail_services, burst=True)  # the batch is made and its operation started
    [batch] = batches(mail_services)
    assert batch.state == RUNNING
    later = storm(mail_services, shop_id, order_tags.BULK_MIN)

    work_until(mail_services, lambda: tagged(mail_services, first + later), seconds=40)

    assert [b.state for b in batches(mail_services)] == [DONE, DONE]
    assert [len(b.task_ids) for b in batches(mail_services)] == [order_tags.BULK_MIN] * 2
    assert admin.of("tagsAdd") == []


def test_a_batch_whose_job_was_lost_is_resumed_by_the_sweep_and_old_rounds_do_nothing(
    mail_services, admin, shop_id
):
    incident_ids = storm(mail_services, shop_id, order_tags.BULK_MIN)
    admin.bulk_polls_before_done = 1_000  # running until the test says otherwise
    run_worker(mail_services, burst=True)  # started; its next round is scheduled
    [batch] = batches(mail_services)
    assert batch.state == RUNNING and batch.round >= 1
    real.flush_redis(mail_services.redis)  # Redis lost everything, the scheduled round with it
    with mail_services.db.session() as session:
        session.execute(update(OrderTagBatch).values(checked_at=utcnow() - timedelta(minutes=10)))

    report = sweep(mail_services)

    assert report.tag_batches == [(batch.id, batch.round)]
    next_round = batch.round + 1
    assert [job for job in queued(mail_services) if job[0] == order_tags.RUN_BATCH] == [
        (order_tags.RUN_BATCH, (batch.id, next_round), f"tag-batch-{batch.id}-{next_round}")
    ]
    polls = len(admin.of("node"))
    order_tags.run_batch(batch.id, batch.round)  # the lost round, had it come back: a duplicate
    assert len(admin.of("node")) == polls
    admin.bulk_polls_before_done = 0
    work_until(mail_services, lambda: tagged(mail_services, incident_ids))
    assert admin.of("tagsAdd") == [] and len(admin.of("bulkOperationRunMutation")) == 1


def test_the_upload_holds_one_line_per_order_in_task_order(mail_services, admin, shop_id):
    incident_ids = storm(mail_services, shop_id, order_tags.BULK_MIN)
    run_worker(mail_services, burst=True)

    [upload] = admin.uploads
    lines = [json.loads(line) for line in upload.decode().splitlines()]
    orders = [incident(mail_services, i).order_id for i in incident_ids]
    assert lines == [{"id": f"gid://shopify/Order/{order}", "tags": ["amends"]} for order in orders]


def test_the_few_tags_left_when_a_batch_ends_are_added_one_by_one_at_once(mail_services, admin, shop_id):
    """Their jobs ran while the batch did and left them to it; the batch's end tags them,
    without waiting for the incident sweep."""
    first = storm(mail_services, shop_id, order_tags.BULK_MIN)
    admin.bulk_polls_before_done = 2
    run_worker(mail_services, burst=True)  # the batch is made and its operation started
    later = storm(mail_services, shop_id, 3)
    run_worker(mail_services, burst=True)  # their jobs find the batch running
    assert admin.of("tagsAdd") == []

    work_until(mail_services, lambda: tagged(mail_services, first + later))

    singles = sorted(int(c.variables["id"].rsplit("/", 1)[1]) for c in admin.of("tagsAdd"))
    assert singles == sorted(incident(mail_services, i).order_id for i in later)
    assert report_of(sweep(mail_services)) == []  # nothing was left for the sweep


def report_of(report) -> list[int]:
    return report.tags


def test_a_storms_tags_wait_from_its_first_minute_while_its_bucket_drains(mail_services, admin, shop_id):
    from actions.follow_up import STORM_INCIDENTS

    domain = shop_domain(mail_services, shop_id)
    # Three quarters full: not short, but the storm spends faster than the bucket refills
    # (slowly here, so a slow machine's test does not see it refill past 90 %).
    budget.observe(mail_services, domain, available=1500.0, maximum=2000.0, restore_rate=10.0)
    incident_ids = [make_incident(mail_services, shop_id) for _ in range(STORM_INCIDENTS + 5)]
    for incident_id in incident_ids:
        open_follow_up(incident_id)  # only the count says "storm"

    assert admin.of("tagsAdd") == []
    assert all("order_tag_deferred" in events(mail_services, i) for i in incident_ids)
    quiet = make_incident(mail_services, shop_id, opened_at=utcnow() - timedelta(hours=1))
    with mail_services.db.session() as session:  # the storm is over: an hour later
        session.execute(update(Incident).values(opened_at=utcnow() - timedelta(hours=1)))
    open_follow_up(quiet)
    assert len(admin.of("tagsAdd")) == 1


def test_many_incidents_a_full_bucket_keeps_up_with_are_tagged_at_once(mail_services, admin, shop_id):
    """Like B2's load (2 incidents a second for each shop): the bucket refills faster than the
    tags spend it, so a waiting tag would only cost a job of its own."""
    from actions.follow_up import STORM_INCIDENTS

    domain = shop_domain(mail_services, shop_id)
    budget.observe(mail_services, domain, available=1950.0, maximum=2000.0, restore_rate=100.0)
    incident_ids = [make_incident(mail_services, shop_id) for _ in range(STORM_INCIDENTS + 5)]
    for incident_id in incident_ids:
        open_follow_up(incident_id)  # a 10-point tag
        time.sleep(0.1)  # under 10 tags a second: within the 100 points a second restored

    assert len(admin.of("tagsAdd")) == len(incident_ids)
    assert not any("order_tag_deferred" in events(mail_services, i) for i in incident_ids)
    assert all(task_of(mail_services, i).order_tagged_at is not None for i in incident_ids)


def shop_domain(services, shop_id: int) -> str:
    with services.db.session() as session:
        shop = session.get(Shop, shop_id)
        assert shop is not None
        return shop.domain
