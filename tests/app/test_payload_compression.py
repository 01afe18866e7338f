"""Migration 0016: lz4 for the big JSON columns on PostgreSQL; rows written before still read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from app.extensions import db
from tests.support.migrations import MIGRATIONS, app_on_empty_database

ORDER = json.loads(
    (
        Path(__file__).resolve().parents[2].parent
        / "shared/fixtures/retail/commerce-order-created-20-lines.json"
    ).read_text()
)
COLUMNS = [("runs", "payload"), ("run_steps", "input"), ("run_steps", "output")]


def _compression() -> dict[tuple[str, str], str]:
    rows = db.session.execute(
        text(
            "SELECT c.relname, a.attname, a.attcompression FROM pg_attribute a"
            " JOIN pg_class c ON c.oid = a.attrelid"
            " WHERE (c.relname, a.attname) IN"
            " (('runs', 'payload'), ('run_steps', 'input'), ('run_steps', 'output'))"
        )
    ).all()
    return {(table, column): method for table, column, method in rows}


def _queued_run(**fields):
    from app.models import Run

    return Run(trigger_kind="webhook", payload=ORDER, status="queued", **fields)


def test_payloads_are_lz4_compressed_and_old_rows_still_read(database_url, tmp_path):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite does not compress")
    from flask_migrate import downgrade, upgrade

    from app.models import Flow, FlowVersion

    with app_on_empty_database(database_url, tmp_path):
        upgrade(directory=MIGRATIONS, revision="0015_drop_prefix_run_indexes")
        assert set(_compression().values()) == {""}  # the server's default (pglz)
        db.session.remove()
        flow = Flow(name="f", slug="f")
        version = FlowVersion(flow=flow, number=1, definition={}, content_hash="x")
        before = _queued_run(flow=flow, version=version, payload_hash="h1")
        db.session.add(before)
        db.session.commit()
        flow_id, version_id, before_id = flow.id, version.id, before.id
        db.session.remove()  # its read locks would block the migration's ALTER TABLE

        upgrade(directory=MIGRATIONS, revision="heads")
        assert _compression() == {column: "l" for column in COLUMNS}
        after = _queued_run(flow_id=flow_id, flow_version_id=version_id, payload_hash="h2")
        db.session.add(after)
        db.session.commit()
        methods = dict(
            db.session.execute(text("SELECT id, pg_column_compression(payload) FROM runs")).all()
        )
        assert methods == {before_id: "pglz", after.id: "lz4"}
        payloads = db.session.execute(text("SELECT payload FROM runs ORDER BY id")).scalars()
        assert list(payloads) == [ORDER, ORDER]
        db.session.remove()

        downgrade(directory=MIGRATIONS, revision="0015_drop_prefix_run_indexes")
        assert set(_compression().values()) == {"p"}  # pglz, said explicitly
        assert list(db.session.execute(text("SELECT payload FROM runs")).scalars()) == [
            ORDER,
            ORDER,
        ]
