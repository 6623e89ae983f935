"""Enqueueing from inside a unit of work: the job is enqueued only once the data it will
load is committed, so it never runs against rows it cannot see yet.

A job that accepts it (`inline=True`) may instead run in the job that asked for it, right
after that job's unit of work commits: the job running it opts in with `collect_inline` and
then calls `run_inline`. A delivery job runs its new incident's first response so: RQ's
bookkeeping and a queue wait fewer per incident. What fails there goes to the queue, to be
retried as if it had been enqueued in the first place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session
from werkzeug.utils import import_string

from plugin.queue import JsonArg
from plugin.services import Services

log = logging.getLogger(__name__)

_INLINE = "amends.inline"  # session.info key: the jobs to run after the commit


@dataclass(frozen=True)
class Job:
    func: str
    args: tuple[JsonArg, ...]
    job_id: str | None
    front: bool


def enqueue_after_commit(
    session: Session,
    services: Services,
    func: str,
    *args: JsonArg,
    job_id: str | None = None,
    delay: timedelta | None = None,
    front: bool = False,
    inline: bool = False,
) -> None:
    collected = session.info.get(_INLINE)
    if inline and delay is None and collected is not None:
        collected.append(Job(func, args, job_id, front))
        return

    def _after_commit(_session: Any) -> None:
        _enqueue(services, Job(func, args, job_id, front), delay)

    event.listen(session, "after_commit", _after_commit, once=True)


def _enqueue(services: Services, job: Job, delay: timedelta | None = None) -> None:
    try:
        services.queue.enqueue(job.func, *job.args, job_id=job.job_id, delay=delay, front=job.front)
    except Exception as error:
        # The committed state says what is left to do; the periodic sweep finds it.
        log.error("could not enqueue %s%r: %s", job.func, job.args, type(error).__name__)


def collect_inline(session: Session) -> list[Job]:
    """From now on, `session`'s inline jobs are kept in the list returned, for `run_inline`
    once the session has committed (never if it rolled back)."""
    collected: list[Job] = []
    session.info[_INLINE] = collected
    return collected


def run_inline(services: Services, jobs: list[Job]) -> None:
    """Run each job here; one that fails is enqueued (after its `retry_after`, if it gave one)
    and retried by the queue. If that enqueue fails too, the periodic sweep finds the work."""
    for job in jobs:
        try:
            import_string(job.func)(*job.args)
        except Exception as error:
            retry_after = getattr(error, "retry_after", None)
            log.warning("%s%r failed here (%s); queued to retry", job.func, job.args, type(error).__name__)
            _enqueue(services, job, timedelta(seconds=retry_after) if retry_after else None)
