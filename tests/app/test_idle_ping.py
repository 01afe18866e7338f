"""Pooled PostgreSQL connections are pinged on checkout only after sitting idle: a busy
connection is reused without a round trip, and one killed by the server while idle is
replaced before a request uses it (what ``pool_pre_ping`` did on every checkout)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text

import app as app_package
from app.extensions import db


@pytest.fixture
def postgres_only(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite connections are in-process: nothing to ping")


def _backend_pid() -> int:
    pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    db.session.commit()
    return pid


def test_a_connection_back_from_a_killed_backend_is_replaced(app, postgres_only, monkeypatch):
    monkeypatch.setattr(app_package, "PING_AFTER_IDLE_SECONDS", 0.2)
    first = _backend_pid()
    db.session.remove()
    # Another client ends the pooled connection's backend, as a server restart would.
    killer = create_engine(db.engine.url)
    with killer.connect() as other:
        assert other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar()
        other.commit()
    killer.dispose()
    time.sleep(0.3)  # idle past the threshold: the next checkout pings
    assert db.session.execute(text("SELECT 1")).scalar_one() == 1  # no error surfaced
    assert _backend_pid() != first


def test_a_connection_used_a_moment_ago_is_not_pinged(app, postgres_only):
    _backend_pid()
    db.session.remove()
    # do_ping runs through the DBAPI cursor directly; count checkouts that ping instead.
    pings = []
    original = db.engine.dialect.do_ping
    db.engine.dialect.do_ping = lambda conn: pings.append(1) or original(conn)
    try:
        for _ in range(5):
            db.session.execute(text("SELECT 1"))
            db.session.commit()
    finally:
        del db.engine.dialect.do_ping
    assert pings == []
