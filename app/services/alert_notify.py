"""Where an alert goes: the technical owner first, the on-call contact on escalation.

- opened: the flow's technical owner (contract ``technical_owner_id``, else the flow's
  owner) by e-mail and in-app, plus the global chat webhook FLOWGATE_ALERT_WEBHOOK_URL;
- escalated (still unacknowledged after the flow's ``escalation.after_minutes``): the
  contract's ``on_call`` e-mail and webhook, the global webhook, and the owner in-app;
- resolved: the owner (e-mail, in-app) and the global webhook.

Every attempt is logged as an ``AlertNotification`` (channel, recipient, ok, error); a failed
channel never stops the others. The caller commits.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import current_app

from app.extensions import db
from app.models import Alert, AlertNotification, Flow, User
from app.services import notify

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


def _redacted_url(url: str) -> str:
    """Chat webhook URLs carry their token in the path: log only scheme and host."""
    parts = urlsplit(url)
    return (
        f"{parts.scheme}://{parts.hostname or '?'}{':' + str(parts.port) if parts.port else ''}/…"
    )


def _attempt(alert: Alert, channel: str, recipient: str, purpose: str, send: Any) -> None:
    entry = AlertNotification(
        alert_id=alert.id, channel=channel, recipient=recipient[:500], purpose=purpose
    )
    try:
        send()
    except Exception as exc:  # one channel failing never stops the others
        entry.ok, entry.error = False, str(exc)[:1000]
        log.warning(
            "alerts.notification_failed alert_id=%s channel=%s error=%s", alert.id, channel, exc
        )
    db.session.add(entry)


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
        _attempt(
            alert,
            "in_app",
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
    for address in dict.fromkeys(emails):
        _attempt(
            alert,
            "email",
            address,
            purpose,
            lambda a=address: notify.send_email([a], subject, body),
        )
    for url in dict.fromkeys(webhooks):
        _attempt(
            alert,
            "webhook",
            _redacted_url(url),
            purpose,
            lambda u=url: notify.post_webhook(u, body_json),
        )
