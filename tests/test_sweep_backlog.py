"""The delivery sweep in a backlog: work older than the cutoff that is only waiting in the
queue is not enqueued again (it would run twice), on real Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from rq.job import Job

from actions.deliveries import PROCESS_DELIVERY
from actions.sweep import sweep_deliveries
from plugin.db import utcnow
from plugin.models import Delivery
from tests import services as real
from tests.conftest import make_config
from wsgi import create_app

pytestmark = pytest.mark.redis


def test_a_delivery_still_queued_is_not_enqueued_again_by_the_sweep(database_url, redis_url):
    app = create_app(make_config(database_url, redis_url=redis_url))
    services = app.extensions["amends"]
    real.empty_tables(services.db.engine)
    queue = services.queue
    try:
        with services.db.session() as session:
            rows = [
                Delivery(
                    webhook_id=f"w-{n}", topic="refunds/create", shop_domain="s.myshopify.com", payload="{}"
                )
                for n in range(3)
            ]
            session.add_all(rows)
            session.flush()
            ids = [row.id for row in rows]
            session.execute(sa.update(Delivery).values(received_at=utcnow() - timedelta(hours=1)))
        # The first is still waiting for a worker; the second's first job is gone (lost).
        queue.enqueue(PROCESS_DELIVERY, ids[0], job_id=f"delivery-{ids[0]}")

        assert sweep_deliveries(services) == 2
        assert sorted(queue.rq.job_ids) == sorted(
            [f"delivery-{ids[0]}", f"sweep-delivery-{ids[1]}", f"sweep-delivery-{ids[2]}"]
        )
        # The next pass finds all three waiting: nothing goes on the queue twice.
        assert sweep_deliveries(services) == 0
        assert len(queue.rq.job_ids) == 3

        # A job that is gone (finished and expired, or deleted) no longer counts as waiting.
        Job.fetch(f"sweep-delivery-{ids[2]}", connection=queue.redis).delete()
        assert sweep_deliveries(services) == 1
        assert queue.rq.job_ids.count(f"sweep-delivery-{ids[2]}") == 1
    finally:
        services.close()
