"""A database lock held too long (a migration, an operator's LOCK TABLE) makes intake answer
503 with Retry-After after FLOWGATE_DB_LOCK_TIMEOUT_MS, instead of holding every web thread
until the lock goes (reliability case 7). PostgreSQL: ``lock_timeout`` on every connection;
SQLite has had its busy timeout from the start."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import text

from app import create_app
from app.extensions import db
from tests.app.test_intake import run_count
from tests.app.test_walking_skeleton import ORDER, live_flow
from tests.conftest import _overrides


@pytest.fixture
def postgres_only(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("lock_timeout is PostgreSQL's (SQLite's busy timeout is a PRAGMA)")


def test_pooled_connections_wait_at_most_the_configured_time(postgres_only, app):
    shown = db.session.execute(text("SHOW lock_timeout")).scalar()
    assert shown == f"{app.config['FLOWGATE_DB_LOCK_TIMEOUT_MS'] // 1000}s"


def test_a_locked_runs_table_is_503_with_retry_after_not_a_hang(
    postgres_only, app, client, make_user, sink, database_url, redis_url, tmp_path
):
    hook = f"/hooks/{live_flow(client, make_user, sink)['flow']['slug']}"
    # A web process of its own with a short limit (the engine reads it when it connects).
    overrides = _overrides(database_url, redis_url, tmp_path / "short")
    short = create_app({**overrides, "FLOWGATE_DB_LOCK_TIMEOUT_MS": 300})
    url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(url) as locker:
            locker.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            refused = short.test_client().post(hook, json=ORDER)
            waited = time.monotonic() - started
            locker.rollback()
        assert refused.status_code == 503, refused.data
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert int(refused.headers["Retry-After"]) > 0
        assert 0.3 <= waited < 3, waited  # the default would have waited 5 s
        assert run_count() == 0

        accepted = short.test_client().post(hook, json=ORDER)  # the lock is gone
        assert accepted.status_code == 202, accepted.data
        assert run_count() == 1
    finally:
        with short.app_context():
            db.session.remove()
            db.engine.dispose()
