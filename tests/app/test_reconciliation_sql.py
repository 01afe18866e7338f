"""Reconciliation checks over SQL: a real PostgreSQL, MariaDB or SQLite database plays the
destination's own system; its scratch table holds the ids it has for the day.

Covers ids mode (missing id listed, alert opened, one-action replay re-sends the delivery the
ledger had as acknowledged), counts mode within and outside the tolerance, the 422 refusals at
save time, the connector's guard / read-only / row-cap / timeout rules, and a password canary.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

from app.extensions import db
from app.models import Alert, AuditEvent, Delivery, Run
from app.models._types import utcnow
from connectors import sql_read
from connectors.base import ConnectorContext, ConnectorError
from connectors.egress import EgressPolicy
from connectors.redaction import Redactor
from connectors.sql import _open
from connectors.sqlutil import read_only_rows
from tests.app.test_alerts import alert_flow
from tests.app.test_execution import post_order
from tests.app.test_reconciliation import UTC_DAY, mixed_day, reconcile
from tests.app.test_walking_skeleton import ORDER
from tests.support.sink import Answer

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
IN_DAY = "SELECT ref FROM {table} WHERE placed_at >= :day_start AND placed_at < :day_end"
COUNT = "SELECT count(*) AS n FROM {table} WHERE placed_at >= :day_start AND placed_at < :day_end"


@dataclass
class ExternalDb:
    """A scratch table ``(ref, placed_at)`` in a real database, and how to reach it."""

    dialect: str
    table: str
    config: dict[str, Any]
    url: str

    def run(self, statement: str, **params: Any) -> None:
        engine = create_engine(self.url)
        try:
            with engine.begin() as conn:
                conn.execute(text(statement.format(table=self.table)), params)
        finally:
            engine.dispose()

    def add(self, ref: str, at: datetime) -> None:
        value: Any = at.isoformat(sep=" ") if self.dialect == "sqlite" else at
        self.run("INSERT INTO {table} (ref, placed_at) VALUES (:ref, :at)", ref=ref, at=value)

    def remove(self, ref: str) -> None:
        self.run("DELETE FROM {table} WHERE ref = :ref", ref=ref)


def _external(dialect: str, tmp_path: Path) -> ExternalDb:
    table = f"oms_orders_{uuid.uuid4().hex[:8]}"
    if dialect == "sqlite":
        path = tmp_path / "oms.db"
        sqlite3.connect(path).close()
        config = {"dialect": "sqlite", "sqlite_path": str(path)}
        external = ExternalDb(dialect, table, config, f"sqlite:///{path}")
        external.run("CREATE TABLE {table} (ref TEXT NOT NULL, placed_at TEXT NOT NULL)")
        return external
    if dialect == "postgresql":
        config = {"dialect": "postgresql", "host": "127.0.0.1", "database": "test"}
        external = ExternalDb(dialect, table, {**config, "username": "postgres"}, PG_URL)
        column = "TIMESTAMP"
    else:
        config = {"dialect": "mysql", "host": "127.0.0.1", "database": "test", "username": "root"}
        external = ExternalDb(dialect, table, config, MARIADB_URL)
        column = "DATETIME"
    external.run(f"CREATE TABLE {{table}} (ref VARCHAR(40) NOT NULL, placed_at {column} NOT NULL)")
    return external


@pytest.fixture(params=["postgresql", "mysql", "sqlite"])
def external_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ExternalDb]:
    external = _external(request.param, tmp_path)
    yield external
    external.run("DROP TABLE {table}")


def today() -> date:
    return utcnow().date()


def noon(day: date) -> datetime:
    return datetime.combine(day, time(12))


def sql_connection(client: Any, ctx: dict[str, Any], config: dict[str, Any], **secrets: str) -> int:
    if config["dialect"] == "sqlite":  # SQLite files only under an approved folder
        client.application.config["FLOWGATE_FILE_ROOTS"] = [str(Path(config["sqlite_path"]).parent)]
    r = client.post(
        "/api/v1/connections",
        json={
            "name": f"OMS database {uuid.uuid4().hex[:6]}",
            "connector": "sql",
            "config": config,
            "secrets": secrets,
        },
        headers=ctx["headers"],
    )
    assert r.status_code == 201, r.get_json()
    return int(r.get_json()["id"])


def put_checks(client: Any, ctx: dict[str, Any], *checks: dict[str, Any]) -> Any:
    url = f"/api/v1/flows/{ctx['flow']['id']}/reconciliation/checks"
    response = client.put(url, json={"checks": list(checks)}, headers=ctx["owner_headers"])
    db.session.rollback()
    return response


def sql_check(connection_id: int, sql: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "OMS orders of the day",
        "side": "destination",
        "kind": "sql",
        "connection_id": connection_id,
        "sql": sql,
        "ids_expression": "ref",
        **extra,
    }


# -- ids mode, alert, one-action replay --------------------------------------------------


def test_sql_check_lists_the_missing_id_and_the_replay_resends_its_acknowledged_delivery(
    app, client, make_user, sink, smtp, chat, run_worker, external_db
):
    ctx = alert_flow(app, client, make_user, sink, smtp, chat, sla=UTC_DAY)
    mixed_day(client, ctx, sink, run_worker)  # 2001, 2002 delivered; 2003 dead; 2004 filtered
    day = today()
    external_db.add("2001", noon(day))
    external_db.add("9999", noon(day))
    external_db.add("2002", noon(day) - timedelta(days=1))  # booked yesterday: not the day's
    connection_id = sql_connection(client, ctx, external_db.config)
    r = put_checks(client, ctx, sql_check(connection_id, IN_DAY.format(table=external_db.table)))
    assert r.status_code == 200, r.get_json()
    [saved] = r.get_json()["checks"]
    assert saved["kind"] == "sql" and saved["mode"] == "ids" and saved["path"] == "/"

    report = reconcile(client, ctx, day=day.isoformat())
    [external] = report["result"]["external"]
    assert external["error"] is None, external
    assert external["missing"] == ["2002"]  # acknowledged by the OMS API, not in its books
    assert external["unexpected"] == ["9999"]
    assert external["ok"] is False and external["ids_listed"] is True
    assert external["step_ids"] == ["send_oms"]
    assert report["ok"] is False and report["differences"] == 1 + 2  # dead letter + 2 ids
    alert = db.session.execute(select(Alert).where(Alert.kind == "reconciliation")).scalar_one()
    assert alert.state == "open"

    run_2002 = db.session.execute(select(Run).where(Run.business_key == "2002")).scalar_one()
    first = [r for r in sink.requests if r.json()["orderRef"] == "WEB-2002"]
    assert len(first) == 1 and run_2002.status == "succeeded"
    key = first[0].headers["Idempotency-Key"]

    replay = f"/api/v1/flows/{ctx['flow']['id']}/reconciliation/{report['id']}/replay"
    r = client.post(replay, headers=ctx["owner_headers"])
    assert r.status_code == 202, r.get_json()
    body = r.get_json()
    assert body["replayed"] == 1  # the dead letter 2003
    assert body["resent"] == 1 and body["resent_runs"][0]["business_key"] == "2002"
    assert body["resent_runs"][0]["step_ids"] == ["send_oms"]
    run_worker()

    again = [r for r in sink.requests if r.json()["orderRef"] == "WEB-2002"]
    assert len(again) == 2 and again[1].headers["Idempotency-Key"] == key  # same key, re-sent
    assert any(r.json()["orderRef"] == "WEB-2003" for r in sink.requests)
    db.session.expire_all()
    assert db.session.get(Run, run_2002.id).status == "succeeded"
    delivery = db.session.execute(
        select(Delivery).where(Delivery.run_id == run_2002.id)
    ).scalar_one()
    assert delivery.status == "acknowledged" and delivery.idempotency_key == key
    [event] = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "reconciliation.resent")
    ).scalars()
    assert event.object_id == str(run_2002.id)
    assert event.detail["idempotency_keys"] == [key] and event.detail["step_ids"] == ["send_oms"]

    # A second click on the same (now stale) report sends nothing again.
    sent = len(sink.requests)
    r = client.post(replay, headers=ctx["owner_headers"])
    assert r.status_code == 202, r.get_json()
    assert r.get_json()["resent"] == 0 and r.get_json()["replayed"] == 0
    reasons = [x["reason"] for x in r.get_json()["not_replayable"]]
    assert any("already replayed after this report" in x for x in reasons), reasons
    run_worker()
    assert len(sink.requests) == sent

    # The OMS books the re-sent and replayed orders; the stray one is cleared: all clean.
    external_db.add("2002", noon(day))
    external_db.add("2003", noon(day))
    external_db.remove("9999")
    clean = reconcile(client, ctx, day=day.isoformat())
    assert clean["ok"] is True, clean["result"]
    assert clean["result"]["external"][0]["missing"] == []
    db.session.expire_all()
    assert db.session.get(Alert, alert.id).state == "resolved"


# -- counts mode --------------------------------------------------------------------------


def test_count_check_compares_counts_within_the_tolerance_and_lists_no_ids(
    app, client, make_user, sink, smtp, chat, run_worker, external_db
):
    ctx = alert_flow(app, client, make_user, sink, smtp, chat, sla=UTC_DAY)
    sink.default = Answer(status=201)
    post_order(client, ctx, dict(ORDER, order_number=3001))
    post_order(client, ctx, dict(ORDER, order_number=3002))
    run_worker()
    day = today()
    external_db.add("A", noon(day))
    external_db.add("B", noon(day))
    external_db.add("C", noon(day) - timedelta(days=1))
    connection_id = sql_connection(client, ctx, external_db.config)
    count = sql_check(connection_id, COUNT.format(table=external_db.table), mode="count")
    count["ids_expression"] = "n"
    assert put_checks(client, ctx, count).status_code == 200

    same = reconcile(client, ctx, day=day.isoformat())
    [external] = same["result"]["external"]
    assert external["error"] is None, external
    assert (external["expected"], external["actual"], external["ok"]) == (2, 2, True)
    assert external["ids_listed"] is False and "no id can be listed" in external["note"]
    assert same["ok"] is True

    external_db.add("D", noon(day))  # the OMS has one more than we delivered
    off = reconcile(client, ctx, day=day.isoformat())
    [external] = off["result"]["external"]
    assert (external["actual"], external["difference"], external["ok"]) == (3, 1, False)
    assert external["missing"] == [] and off["differences"] == 1
    alert = db.session.execute(select(Alert).where(Alert.kind == "reconciliation")).scalar_one()
    assert "counts differ" in alert.last_error and "no ids" in alert.last_error
    replay = f"/api/v1/flows/{ctx['flow']['id']}/reconciliation/{off['id']}/replay"
    r = client.post(replay, headers=ctx["owner_headers"])
    assert r.status_code == 422 and "count-only" in r.get_json()["detail"]

    count["tolerance"] = 1
    assert put_checks(client, ctx, count).status_code == 200
    within = reconcile(client, ctx, day=day.isoformat())
    assert within["result"]["external"][0]["ok"] is True and within["ok"] is True


# -- refusals at save time ---------------------------------------------------------------


@pytest.fixture
def sqlite_oms(tmp_path: Path) -> Iterator[ExternalDb]:
    external = _external("sqlite", tmp_path)
    yield external


def test_bad_sql_unknown_connection_and_wrong_kind_are_refused_with_422(
    app, client, make_user, sink, smtp, chat, sqlite_oms
):
    ctx = alert_flow(app, client, make_user, sink, smtp, chat, sla=UTC_DAY)
    connection_id = sql_connection(client, ctx, sqlite_oms.config)
    good = sql_check(connection_id, IN_DAY.format(table=sqlite_oms.table))
    assert put_checks(client, ctx, good).status_code == 200
    table = sqlite_oms.table
    refused = {
        f"DELETE FROM {table}": "only a SELECT",
        f"SELECT ref FROM {table}; DROP TABLE {table}": "single statement",
        f"WITH gone AS (DELETE FROM {table} RETURNING ref) SELECT ref FROM gone": "DELETE",
        f"SELECT ref INTO copy FROM {table}": "INTO",
        f"SELECT ref FROM {table} WHERE placed_at > :since": "unknown parameter(s) :since",
        f"SELECT ref FROM {table} WHERE": "the database refused the SQL",  # syntax error
        "SELECT ref FROM no_such_table": "no such table",
        "SELECT 'a\\'; DELETE FROM x; --'": "backslash",
    }
    for sql, expected in refused.items():
        r = put_checks(client, ctx, sql_check(connection_id, sql))
        assert r.status_code == 422, (sql, r.get_json())
        body = r.get_json()
        assert r.content_type == "application/problem+json"
        assert expected in body["detail"], (sql, body)
        assert "sql" in body["errors"]["json"]["checks"]["0"], body

    r = put_checks(client, ctx, sql_check(987654, "SELECT 1 AS ref"))
    assert r.status_code == 422 and "does not exist" in r.get_json()["detail"]
    # A SQL check on the HTTP connection, an HTTP check on the SQL connection.
    r = put_checks(client, ctx, sql_check(ctx["connection_id"], "SELECT 1 AS ref"))
    assert r.status_code == 422 and "a sql check reads a sql or poll_sql" in r.get_json()["detail"]
    http = {"name": "api", "side": "source", "connection_id": connection_id, "ids_expression": "x"}
    r = put_checks(client, ctx, http)
    assert r.status_code == 422 and "an http check reads" in r.get_json()["detail"]
    r = put_checks(client, ctx, {**good, "sql": None})
    assert r.status_code == 422 and "sql" in r.get_json()["errors"]["json"]["checks"]["0"]
    r = put_checks(client, ctx, {**good, "ids_expression": "ref["})
    assert r.status_code == 422 and "ids_expression" in r.get_json()["detail"]
    r = put_checks(client, ctx, {**good, "step_id": "no_such_step"})
    assert r.status_code == 422 and "step_id" in r.get_json()["detail"]

    # Refusals replace nothing: the good check is still the only one.
    listed = client.get(
        f"/api/v1/flows/{ctx['flow']['id']}/reconciliation/checks", headers=ctx["headers"]
    ).get_json()["checks"]
    assert [c["sql"] for c in listed] == [good["sql"]]


# -- secrets -----------------------------------------------------------------------------


@pytest.fixture
def mariadb_user() -> Iterator[tuple[str, str]]:
    name = f"fg_recon_{uuid.uuid4().hex[:6]}"
    password = f"canary-{uuid.uuid4().hex}"
    engine = create_engine(MARIADB_URL)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'"))
        conn.execute(text(f"GRANT SELECT ON test.* TO '{name}'@'%'"))
    yield name, password
    with engine.begin() as conn:
        conn.execute(text(f"DROP USER IF EXISTS '{name}'@'%'"))
    engine.dispose()


def test_the_database_password_never_appears_in_checks_reports_or_errors(
    app, client, make_user, sink, smtp, chat, run_worker, mariadb_user, tmp_path
):
    user, password = mariadb_user
    external = _external("mysql", tmp_path)
    try:
        ctx = alert_flow(app, client, make_user, sink, smtp, chat, sla=UTC_DAY)
        mixed_day(client, ctx, sink, run_worker)
        external.add("2001", noon(today()))
        config = {**external.config, "username": user}
        seen: list[str] = []

        wrong = sql_connection(client, ctx, config, password=password + "-wrong")
        r = put_checks(client, ctx, sql_check(wrong, IN_DAY.format(table=external.table)))
        assert r.status_code == 422 and "Access denied" in r.get_json()["detail"]
        seen.append(r.get_data(as_text=True))

        connection_id = sql_connection(client, ctx, config, password=password)
        r = put_checks(client, ctx, sql_check(connection_id, IN_DAY.format(table=external.table)))
        assert r.status_code == 200, r.get_json()
        seen.append(r.get_data(as_text=True))
        report = reconcile(client, ctx, day=today().isoformat())
        assert report["result"]["external"][0]["missing"] == ["2002"]
        seen.append(json.dumps(report))

        # The password changes at the database: the check fails, its error names no secret.
        external.run(f"ALTER USER '{user}'@'%' IDENTIFIED BY 'rotated-elsewhere'")
        failed = reconcile(client, ctx, day=today().isoformat())
        error = failed["result"]["external"][0]["error"]
        assert error and "Access denied" in error
        seen.append(json.dumps(failed))
        base = f"/api/v1/flows/{ctx['flow']['id']}/reconciliation"
        for url in (base, f"{base}/checks", f"/api/v1/connections/{connection_id}"):
            seen.append(client.get(url, headers=ctx["owner_headers"]).get_data(as_text=True))
        replayed = client.post(f"{base}/{report['id']}/replay", headers=ctx["owner_headers"])
        seen.append(replayed.get_data(as_text=True))
        alerts = db.session.execute(select(Alert)).scalars()
        seen.extend(f"{a.summary} {a.last_error} {a.details}" for a in alerts)
        events = db.session.execute(select(AuditEvent)).scalars()
        seen.extend(json.dumps(e.detail, default=str) for e in events)
        assert all(password not in text_ for text_ in seen)
        assert sum("Access denied" in t for t in seen) >= 2  # the error paths were exercised
    finally:
        external.run("DROP TABLE {table}")


# -- the connector on its own ------------------------------------------------------------


def _ctx(external: ExternalDb, sql: str, timeout: float = 10.0) -> ConnectorContext:
    return ConnectorContext(
        connection_config={**external.config, "timeout_seconds": timeout},
        secrets={},
        step_config={"sql": sql},
        logger=logging.getLogger("test"),
        http=None,
        egress=EgressPolicy.from_cidrs(["127.0.0.0/8"]),
    )


DAY = date(2026, 11, 27)
BOUNDS = (DAY, datetime(2026, 11, 27), datetime(2026, 11, 28))


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite"])
def test_the_read_is_bounded_read_only_and_sees_the_day(dialect, tmp_path):
    external = _external(dialect, tmp_path)
    try:
        external.add("in", datetime(2026, 11, 27, 23, 59, 59))
        external.add("before", datetime(2026, 11, 26, 23, 59, 59))
        external.add("after", datetime(2026, 11, 28))
        rows = sql_read.read_rows(
            _ctx(external, IN_DAY.format(table=external.table) + " ORDER BY ref"), *BOUNDS
        )
        assert rows == [{"ref": "in"}]
        by_day = {
            "sqlite": "date(placed_at) = :day",
            "postgresql": "placed_at::date = :day",
            "mysql": "DATE(placed_at) = :day",
        }[dialect]
        rows = sql_read.read_rows(
            _ctx(external, f"SELECT ref, placed_at FROM {external.table} WHERE {by_day}"), *BOUNDS
        )
        assert [r["ref"] for r in rows] == ["in"]
        assert str(rows[0]["placed_at"]).startswith("2026-11-27")  # JSON text, not a datetime

        everything = _ctx(external, f"SELECT ref FROM {external.table}")
        with pytest.raises(ConnectorError, match="more than 2 rows"):
            sql_read.read_rows(everything, *BOUNDS, max_rows=2)
        assert len(sql_read.read_rows(everything, *BOUNDS, max_rows=3)) == 3

        slow = {
            "postgresql": "SELECT pg_sleep(5) AS ref",
            "mysql": "SELECT sleep(5) AS ref",
            "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
            "SELECT count(*) AS ref FROM c",
        }[dialect]
        started = utcnow()
        with pytest.raises(ConnectorError) as caught:
            sql_read.read_rows(_ctx(external, slow, timeout=1), *BOUNDS)
        assert (utcnow() - started).total_seconds() < 4
        assert "longer than 1 s" in caught.value.message or "interrupted" in caught.value.message

        # Past the guard, the transaction itself refuses to write.
        statement = f"DELETE FROM {external.table}"
        if dialect == "postgresql":  # DECLARE … CURSOR takes no DELETE: a SELECT that writes
            external.run("CREATE SEQUENCE {table}_seq")
            statement = f"SELECT nextval('{external.table}_seq') AS ref"
        with pytest.raises(ConnectorError, match="(?i)read.only|readonly"):
            read_only_rows(_open(_ctx(external, "")), statement, {}, max_rows=10, redact=Redactor())
        assert len(sql_read.read_rows(everything, *BOUNDS)) == 3  # nothing was deleted
    finally:
        external.run("DROP TABLE {table}")
        if dialect == "postgresql":
            external.run("DROP SEQUENCE IF EXISTS {table}_seq")


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("SELECT id FROM orders WHERE day = :day;", None),
        ("  (SELECT id FROM a) UNION (SELECT id FROM b)", None),
        ("WITH x AS (SELECT 1 AS id) SELECT id FROM x -- the day's ids\n", None),
        ("SELECT 'a;b' AS id, \"update\" FROM t /* ; */", None),
        ("SELECT id FROM t WHERE at > '10:30'", None),
        ("", "empty"),
        ("UPDATE t SET x = 1", "only a SELECT"),
        ("SELECT 1; SELECT 2", "single statement"),
        ("SELECT 1 --1; DELETE FROM t", "single statement"),  # MySQL: minus minus one
        ("SELECT id FROM t FOR UPDATE", "UPDATE"),
        ("SELECT id FROM t LOCK IN SHARE MODE", "LOCK"),
        ("SELECT * INTO OUTFILE '/tmp/x' FROM t", "INTO"),
        ("SELECT /*!50000 1; DROP TABLE t */ 1", "comments are not allowed"),
        ("SELECT 'unterminated", "unterminated"),
        ("SELECT id FROM t WHERE x = :other", ":other"),
    ],
)
def test_statement_guard(sql, problem):
    found = sql_read.statement_problem(sql)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
