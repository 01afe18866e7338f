"""Reconciliation per flow and day: counts received vs delivered vs dead-lettered vs filtered
per destination, differences by business key, and external checks against the systems' own
id lists. A report with differences opens a ``reconciliation`` alert (routed like any alert);
the next clean report resolves it. Differences that are dead letters are replayed in one
action (:func:`replay_differences`, the dead-letter replay).

Days are local days in the flow's contract time zone (business hours), else UTC. The
scheduler reconciles yesterday once per flow (:func:`daily`), after 00:15 local time.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, current_app
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
    ReconciliationCheck,
    ReconciliationReport,
    Role,
    Run,
    User,
    VersionStatus,
)
from app.models._types import utcnow
from app.services import alert_notify, audit, dead_letters
from app.services.alert_rules import live_contract
from connectors.base import ConnectorContext, ConnectorError, Poller
from flows import mapping, reconcile
from flows.alerting import BusinessHours
from flows.definition import base_step_id

log = logging.getLogger("flowgate.reconciliation")
MAX_DIFFERENCES = 1000
_ACTIVE = (AlertState.OPEN.value, AlertState.ACKNOWLEDGED.value)


def _timezone(flow: Flow) -> str:
    hours = BusinessHours.from_contract(live_contract(flow))
    return hours.timezone if hours else "UTC"


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


# -- external checks ---------------------------------------------------------------------


def _evaluator(app: Flask) -> Any:
    evaluator = runtime.mapping_evaluator(app)

    def evaluate(expression: str, data: Any) -> Any:
        try:
            return evaluator.evaluate(expression, data)
        except mapping.MappingError as exc:
            raise ConnectorError(f"{exc.code}: {exc.message}") from None

    return evaluate


def _their_ids(check: ReconciliationCheck, day: date) -> list[Any]:
    """GET through the connection (auth, egress guard) and extract the ids with JSONata,
    using the poll_http connector for one page (the same code path as an HTTP poll)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    connection = db.session.get(Connection, check.connection_id)
    if connection is None:
        raise ConnectorError(f"connection {check.connection_id} no longer exists")
    if connection.connector_key not in ("http", "poll_http"):
        raise ConnectorError("external checks read HTTP connections only")
    query = {
        k: str(v).replace("{day}", day.isoformat()) if isinstance(v, str) else v
        for k, v in (check.query or {}).items()
    }
    poller = runtime.registry(app).create("poll_http")
    assert isinstance(poller, Poller)
    ctx = ConnectorContext(
        connection_config=dict(connection.config or {}),
        secrets=runtime.secret_box(app).decrypt(connection.secrets_encrypted),
        step_config={
            "path": check.path.replace("{day}", day.isoformat()),
            "query": query,
            "items": check.ids_expression,
            "id": "$string($)",
            "next_cursor": "''",
        },
        logger=logging.getLogger("flowgate.reconciliation.http"),
        http=runtime.http_session(app),
        egress=runtime.egress_policy(app),
        evaluate=_evaluator(app),
    )
    return [item.id for item in poller.poll(ctx, None).items]


def _our_ids(flow: Flow, day: date, side: str) -> list[str]:
    start, end = reconcile.day_bounds(day, _timezone(flow))
    stmt = select(Run.business_key).where(
        Run.flow_id == flow.id,
        Run.received_at >= start,
        Run.received_at < end,
        Run.business_key.is_not(None),
    )
    if side == "destination":  # what we claim to have delivered
        stmt = stmt.where(Run.status == "succeeded")
    return list(db.session.execute(stmt).scalars())


def external(flow: Flow, day: date) -> list[dict[str, Any]]:
    checks = db.session.execute(
        select(ReconciliationCheck).where(
            ReconciliationCheck.flow_id == flow.id, ReconciliationCheck.enabled.is_(True)
        )
    ).scalars()
    results = []
    for check in checks:
        base = {"check_id": check.id, "name": check.name, "side": check.side}
        try:
            theirs = _their_ids(check, day)
        except (ConnectorError, ValueError) as exc:
            message = getattr(exc, "message", str(exc))
            results.append({**base, "ok": False, "error": message})
            continue
        compared = reconcile.compare_ids(_our_ids(flow, day, check.side), theirs, check.tolerance)
        results.append({**base, **compared.to_dict(), "error": None})
    return results


# -- reports, alerts, replay -------------------------------------------------------------


def run_report(flow_id: int, day: date, actor: User | None, trigger: str) -> ReconciliationReport:
    flow = _get_flow(flow_id)
    result = internal(flow, day)
    result["external"] = external(flow, day)
    count = len(result["differences"]) + sum(
        len(e.get("missing", [])) + len(e.get("unexpected", [])) + (1 if e.get("error") else 0)
        for e in result["external"]
    )
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
    db.session.commit()
    if change is not None:
        alert_notify.route(change[0], live_contract(flow), change[1])
        db.session.commit()
    return report


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
        last_error=(first[0].get("reason") if first else None) or "external check mismatch",
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


def replay_differences(flow_id: int, report_id: int, actor: User) -> dict[str, Any]:
    """Replay, in one action, the dead letters a report listed (and the runs behind ids an
    external check found missing at the destination), through the dead-letter replay."""
    report = db.session.get(ReconciliationReport, report_id)
    if report is None or report.flow_id != flow_id:
        raise NotFound(f"flow {flow_id} has no reconciliation report {report_id}")
    ids = {
        d["run_id"] for d in report.result.get("differences", []) if d["status"] == "dead_lettered"
    }
    missing = {
        key
        for e in report.result.get("external", [])
        if e.get("side") == "destination"
        for key in e.get("missing", [])
    }
    if missing:
        ids |= set(
            db.session.execute(
                select(Run.id).where(
                    Run.flow_id == flow_id,
                    Run.business_key.in_(sorted(missing)),
                    Run.status == "dead_lettered",
                )
            ).scalars()
        )
    if not ids:
        raise Invalid("this report lists no dead-lettered runs to replay")
    return dead_letters.replay({"ids": sorted(ids), "version": "original", "dry_run": False}, actor)


# -- checks configuration ----------------------------------------------------------------


def check_view(check: ReconciliationCheck) -> dict[str, Any]:
    return {
        "id": check.id,
        "name": check.name,
        "side": check.side,
        "connection_id": check.connection_id,
        "path": check.path,
        "query": check.query or {},
        "ids_expression": check.ids_expression,
        "tolerance": check.tolerance,
        "enabled": check.enabled,
    }


def list_checks(flow_id: int) -> list[dict[str, Any]]:
    _get_flow(flow_id)
    rows = db.session.execute(
        select(ReconciliationCheck)
        .where(ReconciliationCheck.flow_id == flow_id)
        .order_by(ReconciliationCheck.id)
    ).scalars()
    return [check_view(c) for c in rows]


def put_checks(flow_id: int, checks: list[dict[str, Any]], actor: User) -> list[dict[str, Any]]:
    """Replace the flow's external checks (owners and admins; audited)."""
    if actor.role not in (Role.OWNER.value, Role.ADMIN.value):
        raise Forbidden("only an integration owner or an admin can change reconciliation checks")
    _get_flow(flow_id)
    for item in checks:
        connection = db.session.get(Connection, item["connection_id"])
        if connection is None or connection.connector_key not in ("http", "poll_http"):
            raise Invalid(f"connection {item['connection_id']} is not an HTTP connection")
    db.session.execute(
        ReconciliationCheck.__table__.delete().where(ReconciliationCheck.flow_id == flow_id)
    )
    for item in checks:
        db.session.add(ReconciliationCheck(flow_id=flow_id, **item))
    audit.record(
        actor, "reconciliation_checks.updated", "flow", flow_id, checks=[c["name"] for c in checks]
    )
    db.session.commit()
    return list_checks(flow_id)


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
