"""Where an alert goes: the technical owner first, the on-call contact on escalation.

- opened: the flow's technical owner (contract ``technical_owner_id``, else the flow's
  owner) by e-mail and in-app, plus the global chat webhook FLOWGATE_ALERT_WEBHOOK_URL;
- escalated (still unacknowledged after the flow's ``escalation.after_minutes``): the
  contract's ``on_call`` e-mail and webhook, the global webhook, and the owner in-app;
- resolved: the owner (e-mail, in-app) and the global webhook.

Every message is logged as an ``AlertNotification`` (channel, recipient, purpose). In-app
rows are written at once; e-mails and webhooks are queued in the notification outbox
(:mod:`app.services.outbox`) in the caller's transaction, which sends and retries them: the
log shows the outbox row's status, attempts and last error (:func:`log_of`). A failed
channel never stops the others. The caller commits.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import current_app

from app.extensions import db
from app.models import Alert, AlertNotification, Flow, OutboxMessage, User
from app.services import notify, outbox

log = logging.getLogger("flowgate.alerts")


def public_link(path: str) -> str:
    base = current_app.config.get("FLOWGATE_PUBLIC_URL") or (
        f"http://127.0.0.1:{current_app.config.get('FLOWGATE_PORT', 5000)}"
    )
    return base.rstrip("/") + path


def owner_of(flow: Flow, contract: Mapping[str, Any] | None) -> User | None:
    user_id = (contract or {}).get("technical_owner_id") or flow.owner_id
    user = db.session.get(User, user_id) if user_id else None
    return user if user is not None and user.active else None


def payload(alert: Alert, purpose: str) -> dict[str, Any]:
    """The webhook body: structured fields plus a ``text`` line chat tools display."""
    link = public_link(f"/alerts/{alert.id}")
    words = {"opened": "ALERT", "escalated": "ESCALATED", "resolved": "RESOLVED"}[purpose]
    text = (
        f"[Flowgate {words}] {alert.flow.name}: {alert.kind.replace('_', ' ')} — "
        f"failing system: {alert.system_name or 'unknown'}; error: {alert.last_error or '-'} "
        f"<{link}>"
    )
    return {
        "event": f"alert.{purpose}",
        "text": text,
        "alert": {
            "id": alert.id,
            "kind": alert.kind,
            "severity": alert.severity,
            "state": alert.state,
            "flow": {"id": alert.flow_id, "name": alert.flow.name},
            "system": alert.system_name,
            "error": alert.last_error,
            "summary": alert.summary,
            "link": link,
            "run_link": public_link(f"/runs/{alert.run_id}") if alert.run_id else None,
            "opened_at": alert.opened_at.isoformat() + "Z",
            "resolved_at": alert.resolved_at.isoformat() + "Z" if alert.resolved_at else None,
        },
    }


def _email(alert: Alert, purpose: str, also: list[Alert]) -> tuple[str, str]:
    words = {"opened": "Alert", "escalated": "Escalated alert", "resolved": "Resolved"}[purpose]
    subject = (
        f"[Flowgate] {words} ({alert.severity}): {alert.flow.name} — "
        f"{alert.system_name or 'unknown system'}"
    )
    lines = [
        f"Flow: {alert.flow.name}",
        f"Rule: {alert.kind.replace('_', ' ')}",
        f"Failing system: {alert.system_name or 'unknown'}",
        f"Error: {alert.last_error or '-'}",
        "",
        alert.summary,
        "",
        f"Alert: {public_link(f'/alerts/{alert.id}')}",
    ]
    if alert.run_id:
        lines.append(f"Failing run (step input/output): {public_link(f'/runs/{alert.run_id}')}")
    if also:
        lines += ["", f"Also {purpose} for this flow:"]
        lines += [f"- {a.kind.replace('_', ' ')}: {public_link(f'/alerts/{a.id}')}" for a in also]
    if purpose == "escalated":
        lines.append("Nobody acknowledged this alert in time; you are the on-call contact.")
    return subject[:250], "\n".join(lines)


def _in_app(alert: Alert, recipient: str, purpose: str, send: Any) -> None:
    entry = AlertNotification(
        alert_id=alert.id, channel="in_app", recipient=recipient[:500], purpose=purpose
    )
    try:
        send()
    except Exception as exc:  # one channel failing never stops the others
        entry.ok, entry.error = False, str(exc)[:1000]
        log.warning("alerts.notification_failed alert_id=%s channel=in_app error=%s", alert.id, exc)
    db.session.add(entry)


def _queued(
    alert: Alert, channel: str, recipient: str, purpose: str, message: OutboxMessage | None
) -> None:
    entry = AlertNotification(
        alert_id=alert.id,
        channel=channel,
        recipient=recipient[:500],
        purpose=purpose,
        outbox=message,
    )
    if message is None:  # e-mail is switched off: say so rather than claim it was sent
        entry.ok, entry.error = False, "not sent: no SMTP server is configured (FLOWGATE_SMTP_URL)"
    db.session.add(entry)


def log_of(alert: Alert) -> list[dict[str, Any]]:
    """Every notification of ``alert`` with its outcome: the outbox row's for e-mails and
    webhooks (``ok`` only once sent), the logged one for in-app and grouped rows."""
    items = []
    for n in alert.notifications:
        row = n.outbox
        item = {
            "channel": n.channel,
            "recipient": n.recipient,
            "purpose": n.purpose,
            "sent_at": n.sent_at,
            "ok": n.ok,
            "error": n.error,
            "status": "sent" if n.ok else "failed",
            "attempts": None,
            "next_attempt_at": None,
            "delivered_at": None,
            "outbox_id": None,
        }
        if row is not None:
            item.update(
                ok=row.status == outbox.SENT,
                error=row.last_error,
                status=row.status,
                attempts=row.attempts,
                next_attempt_at=row.next_attempt_at if row.status == outbox.PENDING else None,
                delivered_at=row.sent_at,
                outbox_id=row.id,
            )
        items.append(item)
    return items


def route(
    alert: Alert,
    contract: Mapping[str, Any] | None,
    purpose: str,
    *,
    also: list[Alert] | None = None,
) -> None:
    """Notify about ``alert``; ``also`` are alerts of the same flow that changed in the same
    evaluation: named in this message and logged as ``grouped`` instead of sent again."""
    also = also or []
    owner = owner_of(alert.flow, contract)
    on_call = (contract or {}).get("on_call") or {}
    subject, body = _email(alert, purpose, also)
    body_json = payload(alert, purpose)
    body_json["also"] = [{"id": a.id, "kind": a.kind} for a in also]
    for other in also:
        db.session.add(
            AlertNotification(
                alert_id=other.id,
                channel="grouped",
                recipient=f"with alert #{alert.id}",
                purpose=purpose,
            )
        )
    if owner is not None:
        _in_app(
            alert,
            owner.email,
            purpose,
            lambda: notify.notify_in_app(
                owner.id, f"alert.{purpose}", subject, body, f"/alerts/{alert.id}"
            ),
        )
    emails: list[str] = []
    webhooks: list[str] = []
    if purpose in ("opened", "resolved") and owner is not None:
        emails.append(owner.email)
    if purpose == "escalated":
        emails += [on_call["email"]] if on_call.get("email") else []
        webhooks += [on_call["webhook_url"]] if on_call.get("webhook_url") else []
    global_hook = current_app.config.get("FLOWGATE_ALERT_WEBHOOK_URL")
    if global_hook:
        webhooks.append(global_hook)
    kind = f"alert.{purpose}"
    for address in dict.fromkeys(emails):
        message = (
            outbox.email([address], subject, body, purpose=kind, alert_id=alert.id)
            if notify.smtp_configured()
            else None
        )
        _queued(alert, "email", address, purpose, message)
    for url in dict.fromkeys(webhooks):
        message = outbox.webhook(url, body_json, purpose=kind, alert_id=alert.id)
        _queued(alert, "webhook", notify.redacted_url(url), purpose, message)
