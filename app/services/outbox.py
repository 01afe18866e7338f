"""The notification outbox: e-mails and webhooks are queued with the change they tell about,
then delivered with retries.

- Queue: :func:`email` and :func:`webhook` add an ``OutboxMessage`` to the caller's
  transaction, so an alert that opened or a decision that was taken always has its
  notifications, and a rolled-back action has none. Nothing is sent inside a web request.
- Send: :func:`deliver_due` claims due rows (PostgreSQL ``FOR UPDATE SKIP LOCKED``; SQLite
  has a single writer, and the guarded UPDATE claims each row once either way), moves each
  one's ``next_attempt_at`` out by a lease while it is sent, and records the outcome row by
  row: ``sent``; ``pending`` again after a backoff with jitter; or ``failed`` after
  ``MAX_ATTEMPTS`` attempts (at once when the receiver refused that message for good).
  A sender that dies mid-send leaves its rows to come back when the lease ends (at least
  once). The alert evaluation calls it right after queueing, so the first attempt of an
  alert is immediate; :func:`tick` (each scheduler beat) sends the rest and the retries.
- Failed rows are listed for admins (:func:`list_messages`), who can :func:`retry` them.

Errors are stored redacted (:func:`app.services.notify.redact`): never the webhook URL's
path or query, never the SMTP password.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import selectinload

from app import runtime
from app.errors import Conflict, NotFound
from app.extensions import db
from app.models import OutboxMessage, OutboxStatus, User
from app.models._types import utcnow
from app.services import audit, notify

log = logging.getLogger("flowgate.notify")

# Seconds before attempts 2..6 (attempt 1 is immediate): 30 s, 2 min, 10 min, 30 min, 2 h.
RETRY_DELAYS = (30, 120, 600, 1800, 7200)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.2  # ±20 %: senders that failed together do not all come back together
LEASE = timedelta(minutes=5)  # longer than a pass (PASS_SECONDS + one send's timeout)
BATCH = 50
PASS_SECONDS = 20.0  # a pass stops starting new sends after this; the rest waits a beat
ERROR_CHARS = 1000
PENDING, SENT, FAILED = (s.value for s in OutboxStatus)


# --- queueing (inside the caller's transaction) -------------------------------------------


def email(
    to: list[str],
    subject: str,
    body: str,
    *,
    purpose: str,
    alert_id: int | None = None,
    flow_version_id: int | None = None,
) -> OutboxMessage | None:
    """Queue one e-mail to ``to`` (duplicates dropped); None when nobody is left."""
    recipients = [r for r in dict.fromkeys(to) if r]
    if not recipients:
        return None
    row = OutboxMessage(
        channel="email",
        recipient=", ".join(recipients)[:500],
        subject=subject[:300],
        payload={"to": recipients, "body": body},
        purpose=purpose,
        alert_id=alert_id,
        flow_version_id=flow_version_id,
        next_attempt_at=utcnow(),
    )
    db.session.add(row)
    return row


def webhook(
    url: str,
    body: dict[str, Any],
    *,
    purpose: str,
    alert_id: int | None = None,
    flow_version_id: int | None = None,
) -> OutboxMessage:
    """Queue one JSON POST to ``url``; the URL is stored encrypted and shown by host only."""
    row = OutboxMessage(
        channel="webhook",
        recipient=notify.redacted_url(url)[:500],
        subject=str(body.get("event") or purpose)[:300],
        payload={"json": body},
        target_encrypted=runtime.secret_box().encrypt({"url": url}),
        purpose=purpose,
        alert_id=alert_id,
        flow_version_id=flow_version_id,
        next_attempt_at=utcnow(),
    )
    db.session.add(row)
    return row


# --- sending ----------------------------------------------------------------------------


def tick(app: Flask) -> dict[str, int]:
    """The scheduler's entry point (each beat): send what is due."""
    return deliver_due(app)


def deliver_due(
    app: Flask | None = None,
    *,
    now: datetime | None = None,
    limit: int = BATCH,
    budget: float = PASS_SECONDS,
) -> dict[str, int]:
    """One pass: claim up to ``limit`` due rows and send them; returns what happened."""
    app = app or current_app
    now = now or utcnow()
    counts = {"sent": 0, "retrying": 0, "failed": 0, "deferred": 0}
    claimed = _claim(now, limit)
    if not claimed:
        return counts
    deadline = time.monotonic() + budget
    down: dict[str, datetime] = {}  # server → when its failed message is retried
    rows = db.session.execute(
        select(OutboxMessage).where(OutboxMessage.id.in_(claimed)).order_by(OutboxMessage.id)
    ).scalars()
    for row in list(rows):
        server = _server(row)
        if server in down or time.monotonic() > deadline:
            # One timeout per unreachable server and pass, not one per message: the others
            # wait as long as the one that failed, without spending an attempt.
            row.attempts -= 1
            row.next_attempt_at = down.get(server, now)
            counts["deferred"] += 1
        else:
            outcome, unreachable = _attempt(app, row, now)
            counts[outcome] += 1
            if unreachable:
                down[server] = row.next_attempt_at or now
        db.session.commit()  # row by row: a crash never re-sends what was recorded as sent
    return counts


def _claim(now: datetime, limit: int) -> list[int]:
    due = (
        select(OutboxMessage.id)
        .where(OutboxMessage.status == PENDING, OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)  # PostgreSQL; SQLite ignores it (one writer)
    )
    ids = list(db.session.execute(due).scalars())
    if not ids:
        db.session.rollback()  # end the read transaction
        return []
    claimed = list(
        db.session.execute(
            update(OutboxMessage)
            # Re-checked: a row another sender claimed meanwhile is no longer due.
            .where(
                OutboxMessage.id.in_(ids),
                OutboxMessage.status == PENDING,
                OutboxMessage.next_attempt_at <= now,
            )
            .values(attempts=OutboxMessage.attempts + 1, next_attempt_at=now + LEASE)
            .returning(OutboxMessage.id)
            .execution_options(synchronize_session=False)
        ).scalars()
    )
    db.session.commit()
    return claimed


def _server(row: OutboxMessage) -> str:
    return "smtp" if row.channel == "email" else f"webhook {row.recipient}"


def _attempt(app: Flask, row: OutboxMessage, now: datetime) -> tuple[str, bool]:
    """Send ``row`` once; returns (sent | retrying | failed, whether the server was down)."""
    url = None
    row.last_attempt_at = utcnow()
    try:
        if row.channel == "webhook":
            url = _target(app, row)
            notify.post_webhook(url, (row.payload or {}).get("json") or {})
        else:
            if not notify.smtp_configured():
                raise notify.NotificationError(
                    "no SMTP server is configured (FLOWGATE_SMTP_URL)", unreachable=True
                )
            payload = row.payload or {}
            notify.send_email(payload.get("to") or [], row.subject, payload.get("body") or "")
    except Exception as caught:  # one bad message must not stop the pass
        exc = (
            caught
            if isinstance(caught, notify.NotificationError)
            else notify.NotificationError(f"{type(caught).__name__}: {caught}")
        )
        error = notify.redact(str(exc), url, app.config.get("FLOWGATE_SMTP_URL"))
        row.last_error = error[:ERROR_CHARS]
        gave_up = exc.permanent or row.attempts >= MAX_ATTEMPTS
        row.status = FAILED if gave_up else PENDING
        row.next_attempt_at = None if gave_up else now + backoff(row.attempts)
        log.warning(
            "notify.%s_failed outbox_id=%s purpose=%s attempts=%d gave_up=%s error=%s",
            row.channel,
            row.id,
            row.purpose,
            row.attempts,
            gave_up,
            row.last_error,
        )
        return ("failed" if gave_up else "retrying"), exc.unreachable
    row.status, row.sent_at, row.next_attempt_at = SENT, utcnow(), None
    log.info(
        "notify.%s_sent outbox_id=%s purpose=%s attempts=%d",
        row.channel,
        row.id,
        row.purpose,
        row.attempts,
    )
    return "sent", False


def _target(app: Flask, row: OutboxMessage) -> str:
    try:
        return str(runtime.secret_box(app).decrypt(row.target_encrypted)["url"])
    except (ValueError, KeyError) as exc:  # the secret keys changed since it was queued
        raise notify.NotificationError(
            f"the webhook address cannot be read: {exc}", permanent=True
        ) from exc


def backoff(attempts: int) -> timedelta:
    """The wait after failed attempt number ``attempts`` (1-based), with jitter."""
    base = RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1]
    return timedelta(seconds=base * random.uniform(1 - JITTER, 1 + JITTER))


def prune(before: datetime) -> int:
    """Delete sent messages queued before ``before`` (failed ones stay until retried);
    the caller commits."""
    result = db.session.execute(
        delete(OutboxMessage).where(OutboxMessage.status == SENT, OutboxMessage.created_at < before)
    )
    return int(result.rowcount or 0)


# --- admins -------------------------------------------------------------------------------


def view(row: OutboxMessage) -> dict[str, Any]:
    link = None
    if row.alert_id is not None:
        link = f"/alerts/{row.alert_id}"
    elif row.version is not None:
        link = f"/reviews/{row.version.flow_id}/{row.version.number}"
    return {
        "id": row.id,
        "channel": row.channel,
        "recipient": row.recipient,
        "subject": row.subject,
        "purpose": row.purpose,
        "status": row.status,
        "attempts": row.attempts,
        "max_attempts": MAX_ATTEMPTS,
        "next_attempt_at": row.next_attempt_at if row.status == PENDING else None,
        "last_attempt_at": row.last_attempt_at,
        "last_error": row.last_error,
        "created_at": row.created_at,
        "sent_at": row.sent_at,
        "alert_id": row.alert_id,
        "flow_version_id": row.flow_version_id,
        "link": link,
    }


def list_messages(
    *, status: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int, dict[str, int]]:
    """Newest first, optionally one status; with the count of every status."""
    stmt = select(OutboxMessage)
    if status:
        stmt = stmt.where(OutboxMessage.status == status)
    total = db.session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = db.session.execute(
        stmt.options(selectinload(OutboxMessage.version))
        .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
        .limit(limit)
        .offset(offset)
    ).scalars()
    counts = {s: 0 for s in (PENDING, SENT, FAILED)}
    for key, count in db.session.execute(
        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    ):
        counts[key] = count
    return [view(r) for r in rows], total, counts


def retry(message_id: int, actor: User) -> dict[str, Any]:
    """A failed message is due again now, with a fresh set of attempts; the next scheduler
    beat sends it (audited). Pending ones are retried anyway, and may be in a sender's
    hands right now: only failed ones can be pushed (409 otherwise)."""
    row = db.session.get(OutboxMessage, message_id)
    if row is None:
        raise NotFound(f"notification {message_id} does not exist")
    if row.status != FAILED:
        raise Conflict(f"notification {message_id} is {row.status}, not failed")
    audit.record(
        actor,
        "notification.retried",
        "notification_outbox",
        row.id,
        status=row.status,
        attempts=row.attempts,
    )
    row.status, row.attempts, row.next_attempt_at = PENDING, 0, utcnow()
    db.session.commit()
    return view(row)
