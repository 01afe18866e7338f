"""Outbound notifications: e-mail over SMTP, a JSON webhook, and in-app rows.

``send_email`` and ``post_webhook`` raise :class:`NotificationError` on failure, saying
whether the server was unreachable and whether a retry can help; callers never send
directly but queue through :mod:`app.services.outbox`, which retries. Settings:

- ``FLOWGATE_SMTP_URL``: ``smtp://host:port``, ``smtp://user:pass@host:port?starttls=true``
  or ``smtps://host:port`` (implicit TLS). Unset: e-mail is skipped with a log line.
- ``FLOWGATE_SMTP_FROM``: the sender address.
- ``FLOWGATE_NOTIFY_WEBHOOK_URL``: where governance events are POSTed (see
  :func:`configured_webhook`); the webhook goes through the egress guard like any delivery.
"""

from __future__ import annotations

import logging
import re
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
    """An e-mail or webhook could not be delivered.

    ``unreachable``: the server did not answer (the outbox skips it for the rest of a pass);
    ``permanent``: the receiver refused this message for good (a retry cannot help)."""

    def __init__(self, message: str, *, unreachable: bool = False, permanent: bool = False):
        super().__init__(message)
        self.unreachable, self.permanent = unreachable, permanent


def _refused_for_good(exc: Exception) -> bool:
    # Every recipient refused with a 5xx reply (550 no such user): the same message to the
    # same address is refused again. Other 5xx replies (auth, sender) are configuration.
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(code >= 500 for code in codes)
    return False


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
        raise NotificationError(
            f"e-mail to {len(recipients)} recipient(s) failed: {exc}",
            unreachable=isinstance(
                exc, OSError | smtplib.SMTPConnectError | smtplib.SMTPServerDisconnected
            ),
            permanent=_refused_for_good(exc),
        ) from exc
    log.info("notify.email_sent recipients=%d subject=%r", len(recipients), subject)


def post_webhook(url: str, payload: dict[str, Any]) -> None:
    """POST ``payload`` as JSON (5 s timeout) through the egress guard; 2xx or it raises."""
    try:
        response = runtime.http_session().post(
            url, json=payload, timeout=WEBHOOK_TIMEOUT_SECONDS, allow_redirects=False
        )
    except Exception as exc:  # egress refusal, connection error, timeout
        raise NotificationError(f"webhook failed: {exc}", unreachable=True) from exc
    status = response.status_code
    if not 200 <= status < 300:
        # A 4xx is the receiver's answer to this message; 408/425/429 and 5xx are "later".
        raise NotificationError(
            f"webhook answered HTTP {status}",
            permanent=400 <= status < 500 and status not in (408, 425, 429),
        )
    log.info("notify.webhook_sent status=%d", response.status_code)


def notify_in_app(user_id: int, kind: str, title: str, body: str, link: str | None = None) -> None:
    """Add an in-app notification for ``user_id``; the caller commits."""
    db.session.add(
        Notification(user_id=user_id, kind=kind, title=title[:300], body=body, link=link)
    )


def configured_webhook() -> str | None:
    return current_app.config.get("FLOWGATE_NOTIFY_WEBHOOK_URL") or None


def smtp_configured() -> bool:
    return bool(current_app.config.get("FLOWGATE_SMTP_URL"))


def redacted_url(url: str) -> str:
    """Chat webhook URLs carry their token in the path or query: keep scheme, host, port."""
    parts = urlsplit(url)
    port = f":{parts.port}" if _port(parts) else ""
    return f"{parts.scheme}://{parts.hostname or '?'}{port}/…"


def _port(parts: Any) -> int | None:
    try:
        return parts.port
    except ValueError:  # a malformed port: show none
        return None


_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact(text: str, *urls: str | None) -> str:
    """``text`` (an error message) without the secrets of ``urls``: their path, query,
    query values and password are cut out wherever they appear (libraries quote the
    request path on its own), and any URL left is shown as scheme://host/…."""
    secrets: set[str] = set()
    for url in filter(None, urls):
        parts = urlsplit(url)
        secrets.add(url)
        if parts.path not in ("", "/"):
            secrets.add(parts.path)
        if parts.query:
            secrets.update({parts.query, f"{parts.path}?{parts.query}"})
            secrets.update(v for vs in parse_qs(parts.query).values() for v in vs if len(v) > 2)
        if parts.password:
            secrets.update({parts.password, unquote(parts.password)})
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: whole URL, then parts
        text = text.replace(secret, "…")
    return _URL.sub(lambda m: redacted_url(m.group(0)), text)
