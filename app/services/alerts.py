"""Alerts as users see them: list, acknowledge, resolve, and a flow's MTTD/MTTR.

Evaluation (opening, escalating and auto-resolving) lives in ``app.services.alert_evaluation``
and runs in the scheduler (:func:`tick`); rules in ``app.services.alert_rules``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from app.errors import Conflict, Forbidden, NotFound
from app.extensions import db
from app.models import Alert, AlertState, Role, User
from app.models._types import utcnow
from app.services import alert_notify, audit
from app.services.alert_evaluation import ACTIVE, evaluate, tick
from app.services.alert_rules import live_contract

__all__ = ["acknowledge", "evaluate", "get_alert", "list_alerts", "reliability", "resolve", "tick"]
RELIABILITY_DAYS = 30


def _seconds(start: Any, end: Any) -> float | None:
    if start is None or end is None:
        return None
    return round(max(0.0, (end - start).total_seconds()), 1)


def view(alert: Alert, *, with_notifications: bool = False) -> dict[str, Any]:
    data = {
        "id": alert.id,
        "flow_id": alert.flow_id,
        "flow_name": alert.flow.name,
        "kind": alert.kind,
        "state": alert.state,
        "severity": alert.severity,
        "summary": alert.summary,
        "system": alert.system_name,
        "error": alert.last_error,
        "run_id": alert.run_id,
        "details": alert.details or {},
        "opened_at": alert.opened_at,
        "first_failure_at": alert.first_failure_at,
        "acknowledged_at": alert.acknowledged_at,
        "acknowledged_by": alert.acknowledged_by.email if alert.acknowledged_by else None,
        "escalated_at": alert.escalated_at,
        "resolved_at": alert.resolved_at,
        "resolved_by": alert.resolved_by.email if alert.resolved_by else None,
        "resolution": alert.resolution,
        "mttd_seconds": _seconds(alert.first_failure_at, alert.opened_at),
        "mttr_seconds": _seconds(alert.opened_at, alert.resolved_at),
    }
    if with_notifications:
        data["notifications"] = alert_notify.log_of(alert)
    return data


def list_alerts(
    *, state: str | None, flow_id: int | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """Newest first; ``state`` is open, acknowledged, resolved or ``active`` (open + ack)."""
    stmt = select(Alert)
    if state == "active":
        stmt = stmt.where(Alert.state.in_(ACTIVE))
    elif state:
        stmt = stmt.where(Alert.state == state)
    if flow_id is not None:
        stmt = stmt.where(Alert.flow_id == flow_id)
    total = db.session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = db.session.execute(
        stmt.options(
            selectinload(Alert.flow),
            selectinload(Alert.acknowledged_by),
            selectinload(Alert.resolved_by),
        )
        .order_by(Alert.opened_at.desc(), Alert.id.desc())
        .limit(limit)
        .offset(offset)
    ).scalars()
    return [view(a) for a in rows], total


def _get(alert_id: int) -> Alert:
    alert = db.session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id} does not exist")
    return alert


def get_alert(alert_id: int) -> dict[str, Any]:
    return view(_get(alert_id), with_notifications=True)


def _require_owner(actor: User) -> None:
    if actor.role not in (Role.OWNER.value, Role.ADMIN.value):
        raise Forbidden("only an integration owner or an admin can handle alerts")


def acknowledge(alert_id: int, actor: User) -> dict[str, Any]:
    """Stops the escalation; the alert still resolves by itself when the cause clears."""
    _require_owner(actor)
    alert = _get(alert_id)
    if alert.state != AlertState.OPEN.value:
        raise Conflict(f"alert {alert_id} is {alert.state}, not open")
    alert.state = AlertState.ACKNOWLEDGED.value
    alert.acknowledged_at = utcnow()
    alert.acknowledged_by_id = actor.id
    audit.record(actor, "alert.acknowledged", "alert", alert.id, flow_id=alert.flow_id)
    db.session.commit()
    return get_alert(alert.id)


def resolve(alert_id: int, actor: User) -> dict[str, Any]:
    """Close by hand (if the cause is still there, the next evaluation opens a new alert)."""
    _require_owner(actor)
    alert = _get(alert_id)
    if alert.state == AlertState.RESOLVED.value:
        raise Conflict(f"alert {alert_id} is already resolved")
    alert.state = AlertState.RESOLVED.value
    alert.resolved_at = utcnow()
    alert.resolved_by_id = actor.id
    alert.resolution = "manual"
    audit.record(actor, "alert.resolved", "alert", alert.id, flow_id=alert.flow_id)
    db.session.flush()
    alert_notify.route(alert, live_contract(alert.flow), "resolved")
    db.session.commit()
    return get_alert(alert.id)


def _average(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def reliability(flow_id: int) -> dict[str, Any]:
    """MTTD (first failing event → alert) and MTTR (alert → resolved) over 30 days."""
    since = utcnow() - timedelta(days=RELIABILITY_DAYS)
    rows = list(
        db.session.execute(
            select(Alert)
            .where(Alert.flow_id == flow_id, Alert.opened_at >= since)
            .order_by(Alert.opened_at.desc(), Alert.id.desc())
            .options(selectinload(Alert.flow))
        ).scalars()
    )
    mttd = [s for a in rows if (s := _seconds(a.first_failure_at, a.opened_at)) is not None]
    resolved = [a for a in rows if a.resolved_at is not None]
    mttr = [s for a in resolved if (s := _seconds(a.opened_at, a.resolved_at)) is not None]
    return {
        "flow_id": flow_id,
        "days": RELIABILITY_DAYS,
        "alerts": len(rows),
        "mttd_seconds_avg": _average(mttd),
        "mttd_seconds_last": mttd[0] if mttd else None,
        "mttr_seconds_avg": _average(mttr),
        "mttr_seconds_last": _seconds(resolved[0].opened_at, resolved[0].resolved_at)
        if resolved
        else None,
        "open": [
            view(a)
            for a in db.session.execute(
                select(Alert)
                .where(Alert.flow_id == flow_id, Alert.state.in_(ACTIVE))
                .order_by(Alert.opened_at.desc())
            ).scalars()
        ],
    }
