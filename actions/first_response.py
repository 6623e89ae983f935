"""first_response(incident_id): a new incident's apology, then its follow-up.

`send_apology` and `open_follow_up` stay jobs of their own (the admin's retry, the incident
sweep, a delayed apology and a late order context enqueue them one by one). For an incident
opened with its order's context, the delivery's own job runs both, right after it commits
(`inline` in plugin/jobs.py): no job of its own, and no queue wait, for the step the customer
waits for (RQ's bookkeeping costs ~4 ms of CPU a job, a fifth of a worker's time at 20
incidents a second). If it fails there, or the incident was opened elsewhere (the scan), it
runs as the job `first-<incident>`, ahead of the queue.

Each step is idempotent and records what it did, so a retry of this job redoes only what is
still undone. A failing apology does not hold the follow-up back: the follow-up runs, then
the apology's error is raised (and the job retried).
"""

from __future__ import annotations

from actions.apology import send_apology
from actions.follow_up import open_follow_up


def first_response(incident_id: int) -> None:
    try:
        send_apology(incident_id)
    finally:
        open_follow_up(incident_id)
