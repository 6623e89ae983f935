"""Enqueueing from inside a unit of work: the job is enqueued only once the data it will
load is committed, so it never runs against rows it cannot see yet."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from plugin.queue import JsonArg
from plugin.services import Services

log = logging.getLogger(__name__)


def enqueue_after_commit(
    session: Session,
    services: Services,
    func: str,
    *args: JsonArg,
    job_id: str | None = None,
    delay: timedelta | None = None,
    front: bool = False,
) -> None:
    def _enqueue(_session: Any) -> None:
        try:
            services.queue.enqueue(func, *args, job_id=job_id, delay=delay, front=front)
        except Exception as error:
            # The committed state says what is left to do; the periodic sweep finds it.
            log.error("could not enqueue %s%r: %s", func, args, type(error).__name__)

    event.listen(session, "after_commit", _enqueue, once=True)
