"""open_follow_up(incident_id): the team's task for the incident; the order tagged in Shopify;
staff told by email (each task, or a daily digest by `send_staff_digests`).

Every step is idempotent (one task per incident, adding a tag twice is harmless, the staff
email is a `Message` sent once), so the job can run again after any failure.

Test mode writes nothing to the shop unless the merchant turned on real test codes: the task
is opened as usual, the order is not tagged, and the timeline says so.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from actions import order_tags
from actions.apology import AUTO_RESOLVED, KIND_LABELS, flag, note
from plugin import budget, emails, periodic, sending
from plugin.db import utcnow
from plugin.errors import (
    MailPermanentError,
    MailRetryableError,
    PermanentError,
    RetryableError,
    ShopifyAuthError,
)
from plugin.incidents import add_timeline, resolve
from plugin.models import Incident, Message, Shop, Task, TimelineEntry
from plugin.models.message import STAFF
from plugin.models.task import DONE, OPEN
from plugin.services import Services, current
from plugin.settings import Settings, load
from plugin.shopify.client import ShopifyClient
from plugin.shopify.tags import order_admin_url, tag_order

log = logging.getLogger(__name__)

SOURCE = "job:open_follow_up"
DIGEST = "digest"  # Message.kind of the daily digest
SEND_STAFF_DIGESTS = "actions.follow_up.send_staff_digests"
DIGEST_CHECK_SECONDS = 3600
DIGEST_EVERY = timedelta(hours=24)
DIGEST_MAX_TASKS = 200

TAG_LATER = order_tags.TAG_LATER
# A tag costs 10 points, what another customer's discount code costs. While the shop's bucket
# is under a quarter full (a storm keeps it near empty), the tag goes to the back of the
# queue: the apologies of the incidents still coming, which go to the front, spend the points
# first. (A quarter, not half: a shop's first calls find the model at the smallest plan's
# 1,000 points until it has refilled to what Shopify reports.)
TAG_WAITS_UNDER = 0.25
# Or while the shop's incidents come many at once and spend faster than the bucket refills
# (under 90 % and falling): then its tags wait and go to Shopify together in one bulk
# operation (actions/order_tags.py) instead of 10 points each, from the storm's first minute.
# Many incidents a shop's restore rate keeps up with (a full bucket) are tagged at once: a
# waiting tag costs a job of its own and gains nothing there.
STORM_INCIDENTS = 20
STORM_WINDOW = timedelta(minutes=1)
STORM_LEVEL = 0.9


def tag_order_later(incident_id: int, bulk: bool = True) -> None:
    """The order tag that waited for a storm's apologies: with the others waiting in one bulk
    operation when there are enough of them (actions/order_tags.py), else now on its own,
    whatever the budget."""
    if bulk and order_tags.join_batch(current(), incident_id):
        return
    open_follow_up(incident_id, tag_may_wait=False)


def open_follow_up(incident_id: int, tag_may_wait: bool = True) -> None:
    services = current()
    with services.db.session() as session:
        incident = session.get(Incident, incident_id)
        if incident is None:
            return
        shop = session.get(Shop, incident.shop_id)
        if shop is None or not shop.installed:
            log.info("incident %s: shop not installed; no follow-up", incident_id)
            return
        settings = load(session, shop.id)
        task = _ensure_task(session, incident, settings)
        if settings.kind(incident.kind).auto_resolve and incident.is_open and task.status == OPEN:
            _auto_resolve(session, services, incident, task)
        tag = settings.shop.order_tag
        tag_wanted = settings.shop.tag_orders and task.order_tagged_at is None
        if tag_wanted and shop.test_mode and not settings.shop.real_test_codes:
            tag_wanted = False
            if not _has_entry(session, incident.id, "order_tag_skipped"):
                add_timeline(
                    session,
                    incident,
                    "order_tag_skipped",
                    f'Test mode: the order was not tagged "{tag}" in Shopify (test mode writes nothing to '
                    "the shop unless real test codes are on).",
                    SOURCE,
                    data={"test": True},
                )
        staff_each = settings.shop.staff_notifications == "each"
        shop_id, shop_domain, order_id = shop.id, shop.domain, incident.order_id

    if tag_wanted and tag_may_wait and _tag_should_wait(services, shop_id, shop_domain):
        tag_wanted = not _tag_later(services, incident_id)
    if tag_wanted:
        _tag(services, incident_id, shop_domain, order_id, tag)
    if staff_each:
        _notify_staff(services, incident_id)


def _ensure_task(session: Session, incident: Incident, settings: Settings) -> Task:
    task = session.scalar(select(Task).where(Task.incident_id == incident.id))
    if task is not None:
        return task
    kind = settings.kind(incident.kind)
    due = incident.opened_at + timedelta(hours=kind.sla_hours)
    task = Task(
        shop_id=incident.shop_id,
        incident_id=incident.id,
        title=task_title(incident),
        status=OPEN,
        due_at=due,
    )
    if incident.resolved_at is not None:
        # Resolved before the task was opened (e.g. a refund the merchant resolves at once).
        task.status = DONE
        task.closed_at = incident.resolved_at
        task.closed_by = incident.resolved_by or "resolved"
    try:
        with session.begin_nested():
            session.add(task)
    except IntegrityError:
        existing = session.scalar(select(Task).where(Task.incident_id == incident.id))
        assert existing is not None
        return existing
    if task.status == DONE:
        summary = f"Follow-up task recorded as done: the incident was already resolved ({task.closed_by})."
    else:
        summary = f"Follow-up task opened, due {due:%Y-%m-%d %H:%M} UTC ({kind.sla_hours} h after detection)."
    add_timeline(session, incident, "task_opened", summary, SOURCE, data={"task_id": task.id})
    return task


def _auto_resolve(session: Session, services: Services, incident: Incident, task: Task) -> None:
    """The merchant resolves this kind at once (refunds: the refund is the fix)."""
    task.status = DONE
    task.closed_at = utcnow()
    task.closed_by = AUTO_RESOLVED
    add_timeline(
        session, incident, "task_closed", "Follow-up task closed automatically, as the settings ask.", SOURCE
    )
    resolve(
        session,
        services,
        incident,
        cause=AUTO_RESOLVED,
        summary="Resolved automatically when it was opened, as the settings ask for this kind.",
    )


def task_title(incident: Incident) -> str:
    label = KIND_LABELS.get(incident.kind, incident.kind).capitalize()
    who = f" ({incident.customer_first_name})" if incident.customer_first_name else ""
    return f"{label}: order {incident.order_name or incident.order_id}{who}"


def _tag_should_wait(services: Services, shop_id: int, shop_domain: str) -> bool:
    """The shop's bucket is short, or draining under many incidents (see TAG_WAITS_UNDER)."""
    level = budget.level(services, shop_domain)
    if level is None or level >= STORM_LEVEL:
        return False
    if level < TAG_WAITS_UNDER:
        return True
    recent = (
        select(Incident.id)
        .where(Incident.shop_id == shop_id, Incident.opened_at >= utcnow() - STORM_WINDOW)
        .limit(STORM_INCIDENTS)
    )
    with services.db.session() as session:
        return len(session.scalars(recent).all()) >= STORM_INCIDENTS


def _tag_later(services: Services, incident_id: int) -> bool:
    """Queue the tag behind what is waiting; False if the queue would not take it."""
    job_id = f"tag-{incident_id}"
    try:
        if services.queue.waiting([job_id]):
            return True  # queued by an earlier run of this job
    except Exception as error:
        log.warning("incident %s: could not queue the order tag (%s); tagging now", incident_id, error)
        return False
    # Marked before the job exists: the job may batch it with the other waiting tags.
    with services.db.session() as session:
        incident = session.get(Incident, incident_id)
        task = session.scalar(select(Task).where(Task.incident_id == incident_id))
        if incident is None or task is None:
            return True
        task.order_tag_deferred_at = utcnow()
        add_timeline(
            session,
            incident,
            "order_tag_deferred",
            "The order will be tagged once the apologies waiting are out: the shop's Admin API budget "
            "is short (many incidents at once).",
            SOURCE,
        )
    try:
        services.queue.enqueue(TAG_LATER, incident_id, job_id=job_id)
    except Exception as error:
        log.warning("incident %s: could not queue the order tag (%s); tagging now", incident_id, error)
        return False
    return True


def _tag(services: Services, incident_id: int, shop_domain: str, order_id: int, tag: str) -> None:
    try:
        tag_order(ShopifyClient(services, shop_domain), order_id, [tag])
    except RetryableError as error:
        note(
            services,
            incident_id,
            "order_tag_deferred",
            f"Shopify did not take the order tag yet ({error}); retrying.",
            SOURCE,
        )
        raise
    except (ShopifyAuthError, PermanentError) as error:
        with services.db.session() as session:
            incident = session.get(Incident, incident_id)
            if incident is not None:
                flag(
                    session,
                    incident,
                    f'The order could not be tagged "{tag}" in Shopify: {error}',
                    SOURCE,
                    "order_tag_failed",
                )
        return
    with services.db.session() as session:
        incident = session.get(Incident, incident_id)
        task = session.scalar(select(Task).where(Task.incident_id == incident_id))
        if incident is None or task is None:
            return
        task.order_tagged_at = utcnow()
        add_timeline(
            session,
            incident,
            "order_tagged",
            f'Order tagged "{tag}" in Shopify.',
            "api:tagsAdd",
            data={"tag": tag},
        )


# ---------------------------------------------------------------------------------------------
# Staff notifications


def staff_address(shop: Shop, settings: Settings) -> str | None:
    """The staff address from the settings, else the store's contact address."""
    return settings.shop.staff_address or shop.email


def app_url(config_api_key: str, shop: Shop) -> str:
    """Amends inside the Shopify admin."""
    return f"https://admin.shopify.com/store/{shop.store_handle}/apps/{config_api_key}"


def _notify_staff(services: Services, incident_id: int) -> None:
    config = services.config
    message_id = sending.message_id_for(config, "task", incident_id)
    with services.db.session() as session:
        incident = session.get(Incident, incident_id)
        shop = session.get(Shop, incident.shop_id) if incident else None
        if incident is None or shop is None:
            return
        settings = load(session, shop.id)
        address = staff_address(shop, settings)
        message = sending.get_or_create(
            session, shop_id=shop.id, incident_id=incident.id, kind=STAFF, message_id=message_id
        )
        if message.state != "pending":
            return
        if address is None:
            sending.skip(message, "no staff address and no store contact address")
            add_timeline(
                session,
                incident,
                "staff_notice_skipped",
                "No staff address is set: staff were not emailed.",
                SOURCE,
            )
            return

    def compose(session: Session, message: Message) -> tuple[sending.Envelope, emails.Rendered]:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        shop = session.get(Shop, incident.shop_id)
        assert shop is not None
        task = session.scalar(select(Task).where(Task.incident_id == incident_id))
        entries = list(
            session.scalars(
                select(TimelineEntry)
                .where(TimelineEntry.incident_id == incident_id)
                .order_by(TimelineEntry.id)
            )
        )
        context = _task_context(config.shopify_api_key, shop, incident, task, entries)
        subject = f"New follow-up task: {context['title']}"
        rendered = emails.Rendered(
            subject=subject,
            text=emails.render_file("staff_task.txt", **context),
            html=emails.render_file("staff_task.html", subject=subject, **context),
        )
        return _staff_envelope(config.mail_from, shop, address, incident_id), rendered

    _deliver_staff(services, message_id, compose, incident_id)


def _task_context(
    api_key: str, shop: Shop, incident: Incident, task: Task | None, entries: list[TimelineEntry]
) -> dict[str, Any]:
    return {
        "shop_name": shop.name or shop.domain,
        "title": task.title if task else task_title(incident),
        "kind": KIND_LABELS.get(incident.kind, incident.kind),
        "order_name": incident.order_name or str(incident.order_id),
        "order_url": order_admin_url(shop.domain, incident.order_id),
        "customer": incident.customer_first_name or "(name withheld)",
        "what_happened": emails.default_what_happened(incident.kind, incident.details or {}),
        "due": f"{task.due_at:%Y-%m-%d %H:%M} UTC" if task and task.due_at else "",
        "timeline": [(f"{e.at:%Y-%m-%d %H:%M}", e.summary) for e in entries],
        "app_url": app_url(api_key, shop),
        "test_mode": shop.test_mode,
    }


def _staff_envelope(mail_from: str, shop: Shop, address: str, incident_id: int | None) -> sending.Envelope:
    from email.utils import formataddr, parseaddr

    _, sender_address = parseaddr(mail_from)
    headers = {"Auto-Submitted": "auto-generated"}
    if incident_id is not None:
        headers["X-Amends-Incident"] = str(incident_id)
    return sending.Envelope(
        mail_from=formataddr(("Amends", sender_address)),
        reply_to=None,
        recipient=sending.Recipient(to=address),
        headers=headers,
    )


def _deliver_staff(
    services: Services, message_id: str, compose: sending.Composer, incident_id: int | None
) -> None:
    def on_sent(session: Session, message: Message, recipient: sending.Recipient) -> None:
        incident = session.get(Incident, incident_id) if incident_id is not None else None
        if incident is not None:
            add_timeline(
                session,
                incident,
                "staff_notified",
                f"Staff emailed about the new task ({recipient.label}).",
                "smtp",
                data={"message_id": message_id},
            )

    try:
        sending.deliver(services, message_id, compose, on_sent)
    except MailRetryableError as error:
        if incident_id is not None:
            note(
                services,
                incident_id,
                "staff_notice_deferred",
                f"The staff email did not go out yet ({error}); retrying.",
                "smtp",
            )
        raise
    except MailPermanentError as error:
        log.error("staff email %s refused: %s", message_id, error)
        if incident_id is not None:
            note(
                services,
                incident_id,
                "staff_notice_failed",
                f"The mail server refused the staff email ({error}).",
                "smtp",
            )


def send_staff_digests() -> None:
    """Hourly: each shop on "daily digest" whose last digest is a day old gets one listing the
    tasks opened since."""
    services = current()
    periodic.schedule_next(services, SEND_STAFF_DIGESTS, DIGEST_CHECK_SECONDS)
    with services.db.session() as session:
        shop_ids = list(
            session.scalars(
                select(Shop.id).where(Shop.installed_at.is_not(None), Shop.uninstalled_at.is_(None))
            )
        )
    for shop_id in shop_ids:
        try:
            send_staff_digest(services, shop_id)
        except RetryableError:
            log.warning("shop %s: digest deferred to the next run", shop_id)


def send_staff_digest(services: Services, shop_id: int, now: datetime | None = None) -> str | None:
    """Send the shop's digest when one is due; returns its Message-ID, or None."""
    now = now or utcnow()
    config = services.config
    with services.db.session() as session:
        shop = session.get(Shop, shop_id)
        if shop is None:
            return None
        settings = load(session, shop.id)
        if settings.shop.staff_notifications != "digest":
            return None
        address = staff_address(shop, settings)
        if address is None:
            return None
        last = session.scalar(
            select(Message.created_at)
            .where(Message.shop_id == shop.id, Message.kind == DIGEST)
            .order_by(Message.created_at.desc())
            .limit(1)
        )
        if last is not None and now - last < DIGEST_EVERY:
            return None
        since = last or (now - DIGEST_EVERY)
        tasks = list(
            session.execute(
                select(Task, Incident)
                .join(Incident, Incident.id == Task.incident_id)
                .where(Task.shop_id == shop.id, Task.created_at >= since, Task.created_at < now)
                .order_by(Task.created_at)
                .limit(DIGEST_MAX_TASKS)
            )
        )
        if not tasks:
            return None
        message_id = sending.message_id_for(config, DIGEST, f"{shop.id}-{now:%Y%m%d%H}")
        sending.get_or_create(session, shop_id=shop.id, incident_id=None, kind=DIGEST, message_id=message_id)
        items = [
            {
                "title": task.title,
                "status": task.status,
                "due": f"{task.due_at:%Y-%m-%d %H:%M} UTC" if task.due_at else "",
                "order_url": order_admin_url(shop.domain, incident.order_id),
            }
            for task, incident in tasks
        ]
        context = {
            "shop_name": shop.name or shop.domain,
            "since": f"{since:%Y-%m-%d %H:%M} UTC",
            "tasks": items,
            "open_count": sum(1 for item in items if item["status"] == OPEN),
            "app_url": app_url(config.shopify_api_key, shop),
            "test_mode": shop.test_mode,
        }

    def compose(session: Session, message: Message) -> tuple[sending.Envelope, emails.Rendered]:
        digest_shop = session.get(Shop, shop_id)
        assert digest_shop is not None
        plural = "s" if len(items) != 1 else ""
        subject = f"Amends: {len(items)} new follow-up task{plural} for {context['shop_name']}"
        rendered = emails.Rendered(
            subject=subject,
            text=emails.render_file("staff_digest.txt", **context),
            html=emails.render_file("staff_digest.html", subject=subject, **context),
        )
        return _staff_envelope(config.mail_from, digest_shop, address, None), rendered

    _deliver_staff(services, message_id, compose, None)
    return message_id


def _has_entry(session: Session, incident_id: int, event: str) -> bool:
    found = session.scalar(
        select(TimelineEntry.id)
        .where(TimelineEntry.incident_id == incident_id, TimelineEntry.event == event)
        .limit(1)
    )
    return found is not None
