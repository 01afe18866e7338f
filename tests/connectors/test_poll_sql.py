"""SQL poll trigger against real PostgreSQL and SQLite tables (the Flowgate ledger itself on
SQLite and PostgreSQL too): watermark + id keyset pages, each row version once, changes fire
again, seeding, lost cursor saves, readable failures."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import select, update

from app.extensions import db
from app.models import PollState, Run
from app.models._types import utcnow
from app.services.polling import fire_due_polls, poll_context
from connectors.poll_sql import SqlPollTrigger
from connectors.sqlutil import dispose_engines
from tests.support.live_flows import deliver_to_sink, make_connection, make_live_flow

PG = {"dialect": "postgresql", "host": "127.0.0.1", "port": 5432, "database": "test"}
T = datetime(2026, 3, 1, 9, 0, 0)


@dataclass
class Source:
    name: str
    connection: dict[str, Any]
    table: str
    execute: Any  # (sql, params) -> None

    def insert(self, sku: str, qty: int, updated_at: datetime) -> None:
        ph = "%s" if self.name == "postgresql" else "?"
        self.execute(
            f"INSERT INTO {self.table} (sku, qty, updated_at) VALUES ({ph}, {ph}, {ph})",
            (sku, qty, updated_at),
        )

    def touch(self, sku: str, qty: int, updated_at: datetime) -> None:
        ph = "%s" if self.name == "postgresql" else "?"
        self.execute(
            f"UPDATE {self.table} SET qty = {ph}, updated_at = {ph} WHERE sku = {ph}",
            (qty, updated_at, sku),
        )


@pytest.fixture(params=["postgresql", "sqlite"])
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Source]:
    table = f"stock_{uuid.uuid4().hex[:8]}"
    ddl = (
        f"CREATE TABLE {table} (id {{serial}}, sku VARCHAR(40) UNIQUE NOT NULL, qty INTEGER, "
        "updated_at TIMESTAMP)"
    )
    if request.param == "postgresql":
        try:
            conn = psycopg.connect(
                host="127.0.0.1", user="postgres", dbname="test", autocommit=True
            )
        except psycopg.OperationalError:
            pytest.skip("PostgreSQL not reachable")
        conn.execute(ddl.format(serial="SERIAL PRIMARY KEY"))
        yield Source("postgresql", {**PG, "username": "postgres"}, table, conn.execute)
        conn.execute(f"DROP TABLE {table}")
        conn.close()
    else:
        path = tmp_path / "shop.db"
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute(ddl.format(serial="INTEGER PRIMARY KEY AUTOINCREMENT"))
        yield Source("sqlite", {"dialect": "sqlite", "sqlite_path": str(path)}, table, conn.execute)
        conn.close()
    dispose_engines()


def _flow(source: Source, sink: Any, **config: Any) -> int:
    connection_id = make_connection("poll_sql", source.connection)
    trigger = {
        "type": "poll_sql",
        "connection_id": connection_id,
        "config": {
            "table": source.table,
            "watermark_column": "updated_at",
            "id_column": "id",
            "page_size": 2,
            "interval_seconds": 60,
            **config,
        },
    }
    flow, _ = make_live_flow(deliver_to_sink(trigger, sink.url), "Stock table poll")
    return flow.id


def _runs(flow_id: int) -> list[Run]:
    db.session.expire_all()
    return list(
        db.session.execute(select(Run).where(Run.flow_id == flow_id).order_by(Run.id)).scalars()
    )


def _fired(flow_id: int) -> list[tuple[str, int]]:
    return [(r.payload["sku"], r.payload["qty"]) for r in _runs(flow_id)]


def test_rows_past_the_watermark_fire_once_each_and_changes_fire_again(app, source, sink):
    # Three rows share one watermark value: the page boundary (2) must not skip any.
    for n, sku in enumerate(["A", "B", "C"]):
        source.insert(sku, n, T)
    source.insert("D", 3, T + timedelta(minutes=1))
    source.insert("E", 4, None)  # no watermark: never read
    flow_id = _flow(source, sink)
    t0 = utcnow()

    assert fire_due_polls(app, t0)["fired"] == 4
    assert _fired(flow_id) == [("A", 0), ("B", 1), ("C", 2), ("D", 3)]
    first = _runs(flow_id)[0]
    assert first.trigger_kind == "poll"
    assert first.payload["updated_at"] == "2026-03-01T09:00:00"
    assert first.idempotency_key == f"poll:{flow_id}:{first.payload['id']}@2026-03-01T09:00:00"
    db.session.expire_all()
    state = db.session.execute(select(PollState).where(PollState.flow_id == flow_id)).scalar_one()
    # SQLite: the stored text itself (sqlite3 writes "YYYY-MM-DD HH:MM:SS").
    stored = "2026-03-01 09:01:00" if source.name == "sqlite" else "2026-03-01T09:01:00"
    assert state.cursor == {"watermark": stored, "id": 4}

    source.touch("B", 11, T + timedelta(minutes=2))  # a change moves the watermark
    source.insert("F", 5, T + timedelta(minutes=2))
    assert fire_due_polls(app, t0 + timedelta(seconds=61))["fired"] == 2
    assert _fired(flow_id)[4:] == [("B", 11), ("F", 5)]
    assert fire_due_polls(app, t0 + timedelta(seconds=122))["fired"] == 0


def test_lost_watermark_save_never_duplicates(app, source, sink):
    for n in range(5):
        source.insert(f"S{n}", n, T + timedelta(seconds=n))
    flow_id = _flow(source, sink)
    t0 = utcnow()
    fire_due_polls(app, t0)
    assert len(_runs(flow_id)) == 5
    db.session.execute(update(PollState).where(PollState.flow_id == flow_id).values(cursor=None))
    db.session.commit()
    assert fire_due_polls(app, t0 + timedelta(seconds=61))["fired"] == 0
    assert len(_runs(flow_id)) == 5


def test_seed_moves_past_existing_rows(app, source, sink):
    for n in range(5):
        source.insert(f"S{n}", n, T)
    flow_id = _flow(source, sink, seed_on_first_poll=True)
    t0 = utcnow()
    assert fire_due_polls(app, t0)["fired"] == 0
    source.insert("NEW", 9, T + timedelta(hours=1))
    assert fire_due_polls(app, t0 + timedelta(seconds=61))["fired"] == 1
    assert _fired(flow_id) == [("NEW", 9)]


def test_max_pages_per_poll_leaves_the_rest_for_the_next_poll(app, source, sink):
    for n in range(5):
        source.insert(f"S{n}", n, T + timedelta(seconds=n))
    flow_id = _flow(source, sink, max_pages_per_poll=1)
    t0 = utcnow()
    assert fire_due_polls(app, t0)["fired"] == 2
    assert fire_due_polls(app, t0 + timedelta(seconds=61))["fired"] == 2
    assert fire_due_polls(app, t0 + timedelta(seconds=122))["fired"] == 1
    assert [sku for sku, _ in _fired(flow_id)] == ["S0", "S1", "S2", "S3", "S4"]


def test_unknown_column_is_a_readable_failure(app, source, sink):
    flow_id = _flow(source, sink, watermark_column="changed_on")
    fire_due_polls(app, utcnow())
    db.session.expire_all()
    state = db.session.execute(select(PollState).where(PollState.flow_id == flow_id)).scalar_one()
    assert state.last_error == f"table '{source.table}' has no column 'changed_on'"


def test_check_reports_the_newest_watermark(app, source):
    source.insert("A", 1, T)
    connection_id = make_connection("poll_sql", source.connection)
    config = {"table": source.table, "watermark_column": "updated_at", "id_column": "id"}
    ctx = poll_context(app, {"type": "poll_sql", "connection_id": connection_id, "config": config})
    result = SqlPollTrigger().check(ctx)
    assert result.ok and "newest watermark 2026-03-01T09:00:00" in result.message
    ctx = poll_context(
        app,
        {
            "type": "poll_sql",
            "connection_id": connection_id,
            "config": {**config, "table": "no_such_table"},
        },
    )
    result = SqlPollTrigger().check(ctx)
    assert not result.ok and "unknown table 'no_such_table'" in result.message
