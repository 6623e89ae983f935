"""Periodic jobs: each run schedules the next one under a fixed job id."""

from __future__ import annotations

from datetime import timedelta

from plugin.services import Services

# dotted path → seconds between runs. Filled by the features that need them. The two recovery
# sweeps run every SWEEP_SECONDS (plugin/config.py); shown here at its default.
SCHEDULE: dict[str, int] = {
    # Re-enqueue deliveries (and order-context reads) the queue lost or gave up on.
    "actions.sweep.sweep": 60,
    # Enqueue each installed shop's late-delivery scan when its interval has passed.
    "actions.scan.schedule_scans": 300,
    # Re-enqueue apologies, follow-ups and "fixed" notices whose job was lost.
    "actions.incident_sweep.sweep_incidents": 60,
    # Send the daily staff digest to shops that chose it (checked hourly).
    "actions.follow_up.send_staff_digests": 3600,
}


def ensure_scheduled(services: Services) -> None:
    for func, seconds in SCHEDULE.items():
        schedule_next(services, func, seconds, delay=0)


def schedule_next(services: Services, func: str, seconds: int, delay: int | None = None) -> None:
    job_id = "periodic-" + func.replace(".", "-")
    wait = timedelta(seconds=seconds if delay is None else delay)
    services.queue.enqueue(func, job_id=job_id, delay=wait, retry=False)
