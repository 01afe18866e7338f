"""Outbound notifications: e-mail over SMTP, a JSON webhook, and in-app rows.

``send_email`` and ``post_webhook`` raise :class:`NotificationError` on failure; callers
decide whether that matters (governance actions log it and carry on). Settings:

- ``FLOWGATE_SMTP_URL``: ``smtp://host:port``, ``smtp://user:pass@host:port?starttls=true``
  or ``smtps://host:port`` (implicit TLS). Unset: e-mail is skipped with a log line.
- ``FLOWGATE_SMTP_FROM``: the sender address.
- ``FLOWGATE_NOTIFY_WEBHOOK_URL``: where governance events are POSTed (see
  :func:`configured_webhook`); the webhook goes through the egress guard like any delivery.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from flask import current_app

from app import runtime
from app.extensions import db
from app.models.notification import Notification

log = logging.getLogger("flowgate.notify")

SMTP_TIMEOUT_SECONDS = 10
WEBHOOK_TIMEOUT_SECONDS = 5


class NotificationError(Exception):
    """An e-mail or webhook could not be delivered."""


def _smtp_settings(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise NotificationError("FLOWGATE_SMTP_URL must look like smtp://host:port")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    implicit = parts.scheme == "smtps"
    return {
        "host": parts.hostname,
        "port": parts.port or (465 if implicit else 25),
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "implicit_tls": implicit,
        "starttls": query.get("starttls", "").lower() in ("1", "true", "yes"),
    }


def send_email(to: list[str], subject: str, body: str) -> None:
    """Send a plain-text e-mail to ``to``; a no-op (logged) when no SMTP server is set."""
    recipients = [r for r in dict.fromkeys(to) if r]
    if not recipients:
        return
    url = current_app.config.get("FLOWGATE_SMTP_URL")
    if not url:
        log.info("notify.email_skipped reason=no_smtp_url subject=%r", subject)
        return
    settings = _smtp_settings(url)
    message = EmailMessage()
    message["From"] = current_app.config.get("FLOWGATE_SMTP_FROM") or "flowgate@localhost"
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message.set_content(body)
    try:
        if settings["implicit_tls"]:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                settings["host"],
                settings["port"],
                timeout=SMTP_TIMEOUT_SECONDS,
                context=ssl.create_default_context(),
            )
        else:
            client = smtplib.SMTP(settings["host"], settings["port"], timeout=SMTP_TIMEOUT_SECONDS)
        with client:
            if settings["starttls"]:
                client.starttls(context=ssl.create_default_context())
            if settings["username"]:
                client.login(settings["username"], settings["password"] or "")
            client.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise NotificationError(f"e-mail to {len(recipients)} recipient(s) failed: {exc}") from exc
    log.info("notify.email_sent recipients=%d subject=%r", len(recipients), subject)


def post_webhook(url: str, payload: dict[str, Any]) -> None:
    """POST ``payload`` as JSON (5 s timeout) through the egress guard; 2xx or it raises."""
    try:
        response = runtime.http_session().post(
            url, json=payload, timeout=WEBHOOK_TIMEOUT_SECONDS, allow_redirects=False
        )
    except Exception as exc:  # egress refusal, connection error, timeout
        raise NotificationError(f"webhook failed: {exc}") from exc
    if not 200 <= response.status_code < 300:
        raise NotificationError(f"webhook answered HTTP {response.status_code}")
    log.info("notify.webhook_sent status=%d", response.status_code)


def notify_in_app(user_id: int, kind: str, title: str, body: str, link: str | None = None) -> None:
    """Add an in-app notification for ``user_id``; the caller commits."""
    db.session.add(
        Notification(user_id=user_id, kind=kind, title=title[:300], body=body, link=link)
    )


def configured_webhook() -> str | None:
    return current_app.config.get("FLOWGATE_NOTIFY_WEBHOOK_URL") or None
