"""Reconciliation per flow and day: counts received vs delivered vs dead-lettered vs filtered
per destination, differences by business key, and external checks against the systems' own
id lists. A report with differences opens a ``reconciliation`` alert (routed like any alert);
the next clean report resolves it. External checks (HTTP or SQL) live in
``app.services.reconciliation_checks``; the one-action replay of a report's differences in
``app.services.reconciliation_replay``.

Days are local days in the flow's contract time zone (business hours), else UTC. The
scheduler reconciles yesterday once per flow (:func:`daily`), after 00:15 local time.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask
from sqlalchemy import func, select

from app import runtime
from app.errors import Forbidden, Invalid, NotFound
from app.extensions import db
from app.models import (
    Alert,
    AlertState,
    Connection,
    Delivery,
    Flow,
    FlowVersion,
    ReconciliationReport,
    Role,
    Run,
    User,
    VersionStatus,
)
from app.models._types import utcnow
from app.services import alert_notify, audit, reconciliation_checks
from app.services.alert_rules import live_contract
from flows import reconcile
from flows.definition import base_step_id

log = logging.getLogger("flowgate.reconciliation")
MAX_DIFFERENCES = 1000
_ACTIVE = (AlertState.OPEN.value, AlertState.ACKNOWLEDGED.value)


_timezone = reconciliation_checks.flow_timezone


def _get_flow(flow_id: int) -> Flow:
    flow = db.session.get(Flow, flow_id)
    if flow is None:
        raise NotFound(f"flow {flow_id} does not exist")
    return flow


def _destinations(flow: Flow) -> dict[str, dict[str, Any]]:
    """Deliver steps of the live version: step id → connection and system names."""
    version = next((v for v in flow.versions if v.status == VersionStatus.LIVE.value), None)
    steps = [
        s
        for s in ((version.definition if version else None) or {}).get("steps", [])
        if s.get("type") == "deliver"
    ]
    ids = [s["connection_id"] for s in steps if s.get("connection_id") is not None]
    rows = {
        c.id: c
        for c in db.session.execute(select(Connection).where(Connection.id.in_(ids))).scalars()
    }
    found = {}
    for step in steps:
        connection = rows.get(step.get("connection_id"))
        found[step["id"]] = {
            "connection": connection.name if connection else None,
            "system": connection.system.name if connection and connection.system else None,
        }
    return found


def internal(flow: Flow, day: date) -> dict[str, Any]:
    """The day's counts and the runs not accounted for (aggregate queries)."""
    start, end = reconcile.day_bounds(day, _timezone(flow))
    in_day = (Run.flow_id == flow.id, Run.received_at >= start, Run.received_at < end)
    status_counts = dict(
        db.session.execute(
            select(Run.status, func.count()).where(*in_day).group_by(Run.status)
        ).all()
    )
    delivery_rows = db.session.execute(
        select(Delivery.step_id, Delivery.status, func.count())
        .join(Run, Run.id == Delivery.run_id)
        .where(*in_day)
        .group_by(Delivery.step_id, Delivery.status)
    ).all()
    per_step: dict[str, dict[str, int]] = {}
    for step_id, status, count in delivery_rows:
        # Below a split each item is its own delivery (``send_wms[2]``): counted per step.
        counts = per_step.setdefault(base_step_id(step_id), {})
        counts[status] = counts.get(status, 0) + count
    names = _destinations(flow)
    destinations = [
        {
            "step_id": step_id,
            **names.get(step_id, {"connection": None, "system": None}),
            **reconcile.destination_totals(counts, sum(counts.values())),
        }
        for step_id, counts in sorted({**{s: {} for s in names}, **per_step}.items())
    ]
    rows = db.session.execute(
        select(Run.id, Run.business_key, Run.status, Run.reason)
        .where(*in_day, Run.status.not_in(reconcile.OK_STATUSES))
        .order_by(Run.id)
        .limit(MAX_DIFFERENCES)
    ).all()
    diffs = reconcile.differences(
        [
            {"run_id": r.id, "business_key": r.business_key, "status": r.status, "reason": r.reason}
            for r in rows
        ]
    )
    return {
        "totals": reconcile.totals(status_counts),
        "destinations": destinations,
        "differences": diffs,
    }


# -- reports, alerts, replay -------------------------------------------------------------


def run_report(flow_id: int, day: date, actor: User | None, trigger: str) -> ReconciliationReport:
    flow = _get_flow(flow_id)
    result = internal(flow, day)
    result["external"] = reconciliation_checks.external(flow, day, _timezone(flow))
    count = len(result["differences"]) + sum(_external_count(e) for e in result["external"])
    ok = not result["differences"] and all(e["ok"] for e in result["external"])
    report = ReconciliationReport(
        flow_id=flow.id,
        day=day,
        trigger=trigger,
        ok=ok,
        differences=count,
        result=result,
        created_by_id=actor.id if actor else None,
    )
    db.session.add(report)
    db.session.flush()
    if actor is not None:
        audit.record(actor, "reconciliation.run", "flow", flow.id, day=day.isoformat(), ok=ok)
    change = _alert(flow, report)
    if change is not None:  # queued in the outbox with the report and the alert
        db.session.flush()
        alert_notify.route(change[0], live_contract(flow), change[1])
    db.session.commit()
    return report


def _external_count(check: dict[str, Any]) -> int:
    """How many differences an external check adds: its differing ids, or for a count-only
    check the gap between the counts, or one for a check that failed."""
    if check.get("error"):
        return 1
    if check.get("ids_listed", True):
        return len(check.get("missing", [])) + len(check.get("unexpected", []))
    return abs(int(check.get("difference", 0)))


def _first_mismatch(report: ReconciliationReport) -> str:
    for check in report.result.get("external", []):
        if check.get("ok"):
            continue
        if check.get("error"):
            return f"external check '{check['name']}' failed: {check['error']}"[:500]
        if not check.get("ids_listed", True):
            return (
                f"external check '{check['name']}': counts differ (ours {check['expected']}, "
                f"theirs {check['actual']}); counts only, no ids to list"
            )
        return f"external check '{check['name']}' mismatch"
    return "external check mismatch"


def _alert(flow: Flow, report: ReconciliationReport) -> tuple[Alert, str] | None:
    active = db.session.execute(
        select(Alert).where(
            Alert.flow_id == flow.id, Alert.kind == "reconciliation", Alert.state.in_(_ACTIVE)
        )
    ).scalar_one_or_none()
    now = utcnow()
    if report.ok:
        if active is None:
            return None
        active.state, active.resolved_at, active.resolution = "resolved", now, "auto"
        return active, "resolved"
    if active is not None:
        active.details = {**(active.details or {}), "report_id": report.id}
        return None
    first = report.result["differences"][:1]
    alert = Alert(
        flow_id=flow.id,
        kind="reconciliation",
        severity="high",
        summary=(
            f"{flow.name}: reconciliation of {report.day.isoformat()} found "
            f"{report.differences} difference(s)"
        ),
        details={"report_id": report.id, "day": report.day.isoformat()},
        system_name=None,
        last_error=(first[0].get("reason") if first else None) or _first_mismatch(report),
        run_id=first[0]["run_id"] if first else None,
        opened_at=now,
        first_failure_at=None,  # found by a check, not a failing event: no MTTD
    )
    db.session.add(alert)
    db.session.flush()
    return alert, "opened"


def report_view(report: ReconciliationReport) -> dict[str, Any]:
    return {
        "id": report.id,
        "flow_id": report.flow_id,
        "day": report.day,
        "trigger": report.trigger,
        "ok": report.ok,
        "differences": report.differences,
        "result": report.result,
        "created_at": report.created_at,
    }


def reconcile_now(flow_id: int, day: date | None, actor: User) -> dict[str, Any]:
    if actor.role not in (Role.OWNER.value, Role.ADMIN.value):
        raise Forbidden("only an integration owner or an admin can run a reconciliation")
    flow = _get_flow(flow_id)
    today = datetime.now(ZoneInfo(_timezone(flow))).date()
    day = day or today
    if day > today:
        raise Invalid("cannot reconcile a day in the future")
    return report_view(run_report(flow_id, day, actor, "on_demand"))


def list_reports(flow_id: int, day: date | None, limit: int) -> list[dict[str, Any]]:
    _get_flow(flow_id)
    stmt = select(ReconciliationReport).where(ReconciliationReport.flow_id == flow_id)
    if day is not None:
        stmt = stmt.where(ReconciliationReport.day == day)
    rows = db.session.execute(stmt.order_by(ReconciliationReport.id.desc()).limit(limit)).scalars()
    return [report_view(r) for r in rows]


# -- the scheduler's daily run -----------------------------------------------------------


def daily(app: Flask, now: datetime | None = None) -> int:
    """Reconcile yesterday (local) once per live flow, after 00:15 local; returns how many."""
    from app.redis_conn import get_redis

    now_aware = (now or utcnow()).replace(tzinfo=ZoneInfo("UTC"))
    flows = db.session.execute(
        select(Flow).where(Flow.versions.any(FlowVersion.status == VersionStatus.LIVE.value))
    ).scalars()
    done = 0
    for flow in list(flows):
        local = now_aware.astimezone(ZoneInfo(_timezone(flow)))
        if local.hour == 0 and local.minute < 15:
            continue
        day = local.date() - timedelta(days=1)
        key = f"flowgate:{runtime.idempotency_prefix(app)}:reconcile:{flow.id}:{day.isoformat()}"
        if not get_redis(app).set(key, "1", nx=True, ex=3 * 86400):
            continue
        exists = db.session.execute(
            select(ReconciliationReport.id).where(
                ReconciliationReport.flow_id == flow.id,
                ReconciliationReport.day == day,
                ReconciliationReport.trigger == "scheduled",
            )
        ).first()
        if exists:
            continue
        try:
            run_report(flow.id, day, None, "scheduled")
            done += 1
        except Exception:  # one flow's failing check must not stop the others
            log.exception("reconciliation.failed flow_id=%s day=%s", flow.id, day)
            db.session.rollback()
    return done
