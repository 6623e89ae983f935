"""Periodic jobs: each run schedules the next one under a fixed job id."""

from __future__ import annotations

from datetime import timedelta

from plugin.services import Services

# dotted path → seconds between runs. Filled by the features that need them.
SCHEDULE: dict[str, int] = {}


def ensure_scheduled(services: Services) -> None:
    for func, seconds in SCHEDULE.items():
        schedule_next(services, func, seconds, delay=0)


def schedule_next(services: Services, func: str, seconds: int, delay: int | None = None) -> None:
    job_id = "periodic-" + func.replace(".", "-")
    wait = timedelta(seconds=seconds if delay is None else delay)
    services.queue.enqueue(func, job_id=job_id, delay=wait, retry=False)
