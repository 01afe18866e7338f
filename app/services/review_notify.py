"""Who hears about review-gate events: owners of a submission, the author of a decision.

Called inside the governance change's transaction, before its commit: the in-app rows and
the outbox rows (e-mail, FLOWGATE_NOTIFY_WEBHOOK_URL) commit with the change or not at all.
Nothing is sent here, in the web request: the scheduler's outbox tick sends and retries.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models import FlowVersion, Role, User
from app.services import notify, outbox

log = logging.getLogger("flowgate.notify")


def _link(version: FlowVersion) -> str:
    return f"/reviews/{version.flow_id}/{version.number}"


def _absolute(link: str) -> str:
    base = current_app.config.get("FLOWGATE_PUBLIC_URL")
    return f"{base.rstrip('/')}{link}" if base else link


def _deliver(
    users: list[User], kind: str, title: str, body: str, version: FlowVersion, **extra: Any
) -> None:
    link = _link(version)
    for user in users:
        notify.notify_in_app(user.id, kind, title, body, link)
    emails = [u.email for u in users]
    if not notify.smtp_configured():
        log.info("notify.email_skipped reason=no_smtp_url kind=%s version_id=%s", kind, version.id)
    elif emails:
        outbox.email(
            emails,
            f"[Flowgate] {title}",
            f"{body}\n\n{_absolute(link)}\n",
            purpose=kind,
            flow_version_id=version.id,
        )
    url = notify.configured_webhook()
    if url:
        payload = {
            "event": kind,
            "title": title,
            "flow_id": version.flow_id,
            "flow": version.flow.name,
            "version": version.number,
            "status": version.status,
            "link": _absolute(link),
            **extra,
        }
        outbox.webhook(url, payload, purpose=kind, flow_version_id=version.id)


def submitted(version: FlowVersion, actor: User) -> None:
    """Every active owner except the version's author and contributors."""
    excluded = {version.author_id, *(version.contributor_ids or []), actor.id}
    owners = [
        u
        for u in db.session.execute(
            select(User).where(User.role == Role.OWNER.value, User.active.is_(True))
        ).scalars()
        if u.id not in excluded
    ]
    title = f"{version.flow.name} v{version.number} is waiting for your review"
    body = f"{actor.email} submitted version {version.number} of {version.flow.name} for review."
    _deliver(owners, "review.submitted", title, body, version, actor=actor.email)


def decided(version: FlowVersion, actor: User, decision: str, comment: str) -> None:
    """The author of the version hears the owner's decision."""
    author = db.session.get(User, version.author_id) if version.author_id else None
    if author is None:
        return
    title = f"{version.flow.name} v{version.number} was {decision}"
    body = f"{actor.email} {decision} version {version.number} of {version.flow.name}."
    if comment:
        body += f"\n\nComment:\n{comment}"
    _deliver([author], f"review.{decision}", title, body, version, actor=actor.email)
