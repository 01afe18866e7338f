"""External reconciliation checks: ask a source or destination system for its own ids (or
count) of a day and compare them with ours.

Two kinds: ``http`` GETs an API through an HTTP connection (the poll_http connector's code
path: auth, egress guard); ``sql`` runs one read-only SELECT on a SQL connection
(``connectors.sql_read``: statement guard, read-only transaction, statement timeout, row
cap) with the day's bounds as ``:day``, ``:day_start``, ``:day_end``. A JSONata expression
turns the answer (HTTP: the JSON body; SQL: the rows as a list of objects) into the id list
(mode ``ids``) or one number (mode ``count``: compared as counts within the tolerance; no id
can be listed, the result says so).

Checks are validated when saved: the connection exists and is of the check's kind, the SQL is
one SELECT that the database can plan (EXPLAIN), the expression compiles. Errors never carry
a connection secret (the connectors redact, and so does this module once more).
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, current_app
from sqlalchemy import select

from app import runtime
from app.errors import Forbidden, Invalid, NotFound
from app.extensions import db
from app.models import (
    Connection,
    Flow,
    FlowVersion,
    ReconciliationCheck,
    Role,
    Run,
    User,
    VersionStatus,
)
from app.services import audit
from app.services.alert_rules import live_contract
from connectors import sql_read
from connectors.base import ConnectorContext, ConnectorError, Poller
from connectors.redaction import Redactor
from flows import mapping, reconcile
from flows.alerting import BusinessHours

CONNECTORS = {"http": ("http", "poll_http"), "sql": ("sql", "poll_sql")}
COUNT_ONLY_NOTE = "counts only: this check gives no id list, so no id can be listed or replayed"


def flow_timezone(flow: Flow) -> str:
    """The flow's contract time zone (business hours), else UTC: days are local days."""
    hours = BusinessHours.from_contract(live_contract(flow))
    return hours.timezone if hours else "UTC"


def _get_flow(flow_id: int) -> Flow:
    flow = db.session.get(Flow, flow_id)
    if flow is None:
        raise NotFound(f"flow {flow_id} does not exist")
    return flow


def _app() -> Flask:
    return current_app._get_current_object()  # type: ignore[attr-defined,no-any-return]


def _context(app: Flask, connection: Connection, step_config: dict[str, Any]) -> ConnectorContext:
    return ConnectorContext(
        connection_config=dict(connection.config or {}),
        secrets=runtime.secret_box(app).decrypt(connection.secrets_encrypted),
        step_config=step_config,
        logger=logging.getLogger(f"flowgate.reconciliation.{connection.connector_key}"),
        http=runtime.http_session(app),
        egress=runtime.egress_policy(app),
        evaluate=runtime.connector_evaluator(app),
    )


# -- asking the system -------------------------------------------------------------------


def _http_config(check: ReconciliationCheck, day: date) -> dict[str, Any]:
    """A poll_http step config for one GET (the same code path as an HTTP poll)."""
    iso = day.isoformat()
    return {
        "path": check.path.replace("{day}", iso),
        "query": {
            k: v.replace("{day}", iso) if isinstance(v, str) else v
            for k, v in (check.query or {}).items()
        },
        "items": check.ids_expression,
        "id": "$string($)",
        "next_cursor": "''",
    }


def _their_values(check: ReconciliationCheck, day: date, tz: str) -> Any:
    """The expression's result on the system's answer: ids, or the count (HTTP gives the
    picked items, a count comes back as one item)."""
    app = _app()
    connection = db.session.get(Connection, check.connection_id)
    if connection is None:
        raise ConnectorError(f"connection {check.connection_id} no longer exists")
    if connection.connector_key not in CONNECTORS.get(check.kind, ()):
        raise ConnectorError(f"a {check.kind} check cannot read a {connection.connector_key} one")
    if check.kind == "sql":
        ctx = _context(app, connection, {"sql": check.sql or ""})
    else:
        ctx = _context(app, connection, _http_config(check, day))
    try:
        if check.kind == "sql":
            start, end = reconcile.day_bounds(day, tz)
            rows = sql_read.read_rows(ctx, day, start, end)
            assert ctx.evaluate is not None
            return ctx.evaluate(check.ids_expression, rows)
        poller = runtime.registry(app).create("poll_http")
        assert isinstance(poller, Poller)
        items = poller.poll(ctx, None).items
        return [item.message if check.mode == "count" else item.id for item in items]
    except ConnectorError as exc:
        # The connectors redact what they raise; once more here, for what they did not write.
        raise ConnectorError(Redactor(ctx.secrets.values())(exc.message)) from None


def _ids(value: Any) -> list[Any]:
    values = [] if value is None else value if isinstance(value, list) else [value]
    for item in values:
        if isinstance(item, (dict, list)) or isinstance(item, bool):
            shown = type(item).__name__.replace("dict", "object").replace("list", "array")
            raise ValueError(f"the ids expression must give strings or numbers, got an {shown}")
    return values


def _count(value: Any) -> int:
    if isinstance(value, list) and len(value) == 1:  # an HTTP item list, or rows of one
        value = value[0]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or value != int(value) or value < 0:
        shown = repr(value)[:100]
        raise ValueError(f"a count check's expression must give one whole number, got {shown}")
    return int(value)


def our_ids(flow: Flow, day: date, side: str, tz: str) -> list[str]:
    """Business keys we received that day (source side) or delivered (destination side)."""
    start, end = reconcile.day_bounds(day, tz)
    stmt = select(Run.business_key).where(
        Run.flow_id == flow.id,
        Run.received_at >= start,
        Run.received_at < end,
        Run.business_key.is_not(None),
    )
    if side == "destination":  # what we claim to have delivered
        stmt = stmt.where(Run.status == "succeeded")
    return list(db.session.execute(stmt).scalars())


def _deliver_steps(version: FlowVersion | None) -> dict[str, int | None]:
    steps = ((version.definition if version else None) or {}).get("steps", [])
    return {s["id"]: s.get("connection_id") for s in steps if s.get("type") == "deliver"}


def covered_steps(flow: Flow, check: ReconciliationCheck) -> list[str]:
    """The live version's deliver steps a destination check reads: its ``step_id``, else the
    steps delivering through the same connection or to the same system, else the only one."""
    if check.side != "destination":
        return []
    live = next((v for v in flow.versions if v.status == VersionStatus.LIVE.value), None)
    steps = _deliver_steps(live)
    if check.step_id:
        return [check.step_id] if check.step_id in steps else []
    same = [s for s, cid in steps.items() if cid == check.connection_id]
    if same:
        return same
    connection = db.session.get(Connection, check.connection_id)
    system = connection.system_id if connection is not None else None
    if system is not None:
        ids = [cid for cid in steps.values() if cid is not None]
        systems = dict(
            db.session.execute(
                select(Connection.id, Connection.system_id).where(Connection.id.in_(ids))
            ).all()
        )
        same = [s for s, cid in steps.items() if cid is not None and systems.get(cid) == system]
        if same:
            return same
    return list(steps) if len(steps) == 1 else []


def run_check(flow: Flow, check: ReconciliationCheck, day: date, tz: str) -> dict[str, Any]:
    """One check's result for the report (never raises for the system's failures)."""
    base = {
        "check_id": check.id,
        "name": check.name,
        "side": check.side,
        "kind": check.kind,
        "mode": check.mode,
        "step_ids": covered_steps(flow, check),
    }
    try:
        value = _their_values(check, day, tz)
        ours = our_ids(flow, day, check.side, tz)
        if check.mode == "count":
            compared = reconcile.compare_counts(len(set(ours)), _count(value), check.tolerance)
            return {
                **base,
                **compared,
                "missing": [],
                "unexpected": [],
                "ids_listed": False,
                "note": COUNT_ONLY_NOTE,
                "error": None,
            }
        ids = reconcile.compare_ids(ours, _ids(value), check.tolerance)
        return {**base, **ids.to_dict(), "ids_listed": True, "error": None}
    except (ConnectorError, ValueError) as exc:
        return {**base, "ok": False, "error": getattr(exc, "message", str(exc))}


def external(flow: Flow, day: date, tz: str) -> list[dict[str, Any]]:
    checks = db.session.execute(
        select(ReconciliationCheck)
        .where(ReconciliationCheck.flow_id == flow.id, ReconciliationCheck.enabled.is_(True))
        .order_by(ReconciliationCheck.id)
    ).scalars()
    return [run_check(flow, check, day, tz) for check in list(checks)]


# -- configuration -----------------------------------------------------------------------


def check_view(check: ReconciliationCheck) -> dict[str, Any]:
    return {
        "id": check.id,
        "name": check.name,
        "side": check.side,
        "kind": check.kind,
        "mode": check.mode,
        "connection_id": check.connection_id,
        "path": check.path,
        "query": check.query or {},
        "sql": check.sql,
        "ids_expression": check.ids_expression,
        "step_id": check.step_id,
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


def _refuse(index: int, field: str, message: str) -> Invalid:
    # The shape of the schema's own 422s, so the editor shows both kinds the same way.
    return Invalid(message, errors={"json": {"checks": {str(index): {field: [message]}}}})


def _validated(flow: Flow, index: int, item: dict[str, Any], steps: set[str]) -> dict[str, Any]:
    name = item["name"]
    connection = db.session.get(Connection, item["connection_id"])
    if connection is None:
        message = f"check '{name}': connection {item['connection_id']} does not exist"
        raise _refuse(index, "connection_id", message)
    kind = item["kind"]
    if connection.connector_key not in CONNECTORS[kind]:
        wanted = " or ".join(CONNECTORS[kind])
        article = "an" if kind == "http" else "a"
        message = (
            f"check '{name}': connection '{connection.name}' is a {connection.connector_key} "
            f"connection; {article} {kind} check reads a {wanted} connection"
        )
        raise _refuse(index, "connection_id", message)
    error = mapping.check_expression(item["ids_expression"])
    if error is not None:
        message = f"check '{name}': ids_expression: {error.code}: {error.message}"
        raise _refuse(index, "ids_expression", message)
    if item.get("step_id") and (item["side"] != "destination" or item["step_id"] not in steps):
        message = f"check '{name}': step_id must name a deliver step of a destination check"
        raise _refuse(index, "step_id", message)
    if kind == "sql":
        item = {**item, "path": "/", "query": {}}
        _check_sql(flow, index, name, connection, item["sql"])
    else:
        item = {**item, "sql": None}
    return item


def _check_sql(flow: Flow, index: int, name: str, connection: Connection, sql: str) -> None:
    """One SELECT (the guard), which the database can plan (EXPLAIN, read-only)."""
    problem = sql_read.statement_problem(sql)
    if problem is not None:
        raise _refuse(index, "sql", f"check '{name}': {problem}")
    tz = flow_timezone(flow)
    day = datetime.now(ZoneInfo(tz)).date()
    start, end = reconcile.day_bounds(day, tz)
    ctx = _context(_app(), connection, {"sql": sql})
    try:
        sql_read.probe(ctx, day, start, end)
    except ConnectorError as exc:
        message = Redactor(ctx.secrets.values())(exc.message)
        refused = f"check '{name}': the database refused the SQL: {message}"
        raise _refuse(index, "sql", refused) from None


def put_checks(flow_id: int, checks: list[dict[str, Any]], actor: User) -> list[dict[str, Any]]:
    """Replace the flow's external checks (owners and admins; validated; audited)."""
    if actor.role not in (Role.OWNER.value, Role.ADMIN.value):
        raise Forbidden("only an integration owner or an admin can change reconciliation checks")
    flow = _get_flow(flow_id)
    steps = {s for v in flow.versions for s in _deliver_steps(v)}
    valid = [_validated(flow, i, item, steps) for i, item in enumerate(checks)]
    db.session.execute(
        ReconciliationCheck.__table__.delete().where(ReconciliationCheck.flow_id == flow_id)
    )
    for item in valid:
        db.session.add(ReconciliationCheck(flow_id=flow_id, **item))
    audit.record(
        actor,
        "reconciliation_checks.updated",
        "flow",
        flow_id,
        checks=[{"name": c["name"], "kind": c["kind"], "mode": c["mode"]} for c in valid],
    )
    db.session.commit()
    return list_checks(flow_id)
