"""SqlDestination against concurrent writers on real servers (reliability case 16): a
deadlock or a serialization failure rolls the whole message back as a *retryable* error, and
the retried upsert leaves one row per natural key.

The other writer is a plain driver session that locks the same rows in the opposite order.
PostgreSQL and MariaDB on 127.0.0.1 (skipped locally when unreachable, required under
CI=true, as in tests/connectors/test_sql_destination.py).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pymysql
import pytest

from connectors.base import ConnectorContext, RetryableConnectorError
from connectors.egress import EgressPolicy
from connectors.sql import SqlDestination
from connectors.sqlutil import dispose_engines

LOOPBACK = EgressPolicy.from_cidrs(["127.0.0.0/8"])
SERVERS = {
    "postgresql": {"port": 5432, "username": "postgres"},
    "mysql": {"port": 3306, "username": "root"},
}
MESSAGE = [{"sku": "A", "name": "new", "qty": 1}, {"sku": "B", "name": "new", "qty": 2}]
FILLER = 50  # rows the other writer updates: MariaDB rolls back the lighter transaction


def _reachable(port: int) -> None:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no database server on 127.0.0.1:{port}")


def _connect(dialect: str, database: str = "test", *, autocommit: bool) -> Any:
    if dialect == "postgresql":
        return psycopg.connect(
            host="127.0.0.1", user="postgres", dbname=database, autocommit=autocommit
        )
    return pymysql.connect(host="127.0.0.1", user="root", database=database, autocommit=autocommit)


def _run(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    try:
        cur.execute(sql)
        return [tuple(row) for row in cur.fetchall()] if cur.description else []
    finally:
        cur.close()


@pytest.fixture(autouse=True)
def _close_engines() -> Iterator[None]:
    yield
    dispose_engines()  # before any DROP: the connector's pool holds sessions


@pytest.fixture(params=["postgresql", "mysql"])
def dialect(request: pytest.FixtureRequest) -> str:
    _reachable(SERVERS[request.param]["port"])
    return str(request.param)


@pytest.fixture
def table(dialect: str) -> Iterator[str]:
    """A fresh table holding A and B, and FILLER rows only the other writer touches."""
    name = f"fg_sqlc_{uuid.uuid4().hex[:10]}"  # the servers are shared: never a fixed name
    admin = _connect(dialect, autocommit=True)
    try:
        _run(
            admin,
            f"CREATE TABLE {name} (sku VARCHAR(32) NOT NULL PRIMARY KEY, qty INTEGER,"
            " name VARCHAR(100) NOT NULL)",
        )
        filler = ", ".join(f"('Z-{n:03d}', 'filler', 0)" for n in range(FILLER))
        _run(
            admin,
            f"INSERT INTO {name} (sku, name, qty) VALUES ('A', 'old', 0),"
            f" ('B', 'old', 0), {filler}",
        )
        yield name
    finally:
        dispose_engines()
        _run(admin, f"DROP TABLE IF EXISTS {name}")
        admin.close()


def _ctx(dialect: str, table: str, database: str = "test") -> ConnectorContext:
    server = SERVERS[dialect]
    return ConnectorContext(
        connection_config={
            "dialect": dialect,
            "host": "127.0.0.1",
            "port": server["port"],
            "database": database,
            "username": server["username"],
            # PostgreSQL: the connector's lock_timeout; far above deadlock_timeout (1 s).
            "timeout_seconds": 10,
        },
        secrets={},
        step_config={"table": table, "mode": "upsert", "key_columns": ["sku"]},
        logger=logging.getLogger("tests.connectors.sql"),
        http=None,
        egress=LOOPBACK,
    )


def _send(ctx: ConnectorContext) -> Any:
    return SqlDestination().send(ctx, MESSAGE, idempotency_key="run-1:save")


def _wait_until_the_connector_waits(dialect: str, table: str, database: str = "test") -> None:
    """Until a session writing ``table`` waits for a row lock (the connector, in its thread)."""
    if dialect == "postgresql":
        sql = (
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            f" AND datname = '{database}' AND query LIKE '%{table}%'"
            " AND pid <> pg_backend_pid()"
        )
    else:
        sql = (
            "SELECT count(*) FROM information_schema.innodb_trx"
            f" WHERE trx_state = 'LOCK WAIT' AND trx_query LIKE '%{table}%'"
        )
    watcher = _connect(dialect, database, autocommit=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _run(watcher, sql)[0][0]:
                return
            # Not faster: InnoDB refreshes innodb_trx only when unread for 0.1 s.
            time.sleep(0.15)
    finally:
        watcher.close()
    raise AssertionError("the connector never waited for the other writer's row lock")


def _rows(dialect: str, table: str, database: str = "test") -> list[tuple[Any, ...]]:
    conn = _connect(dialect, database, autocommit=True)
    try:
        return _run(
            conn, f"SELECT sku, name, qty FROM {table} WHERE sku IN ('A', 'B') ORDER BY sku"
        )
    finally:
        conn.close()


def test_a_deadlock_is_retryable_and_the_retried_upsert_leaves_one_row_per_key(
    dialect: str, table: str
) -> None:
    ctx = _ctx(dialect, table)
    other = _connect(dialect, autocommit=False)
    try:
        if dialect == "postgresql":
            # This session looks for a deadlock only after 30 s: the connector's session
            # (the server default, 1 s) finds it first and is the one rolled back.
            _run(other, "SET deadlock_timeout = '30s'")
        # Heavier than the connector's transaction (MariaDB's victim is the lighter one).
        _run(other, f"UPDATE {table} SET qty = qty + 1 WHERE sku LIKE 'Z-%'")
        _run(other, f"UPDATE {table} SET qty = 10 WHERE sku = 'B'")  # holds B
        with ThreadPoolExecutor(1) as pool:
            sending = pool.submit(_send, ctx)  # takes A, then waits for B
            _wait_until_the_connector_waits(dialect, table)
            _run(other, f"UPDATE {table} SET qty = 10 WHERE sku = 'A'")  # waits for A: a cycle
            error = sending.exception(timeout=30)
        other.rollback()
    finally:
        other.close()

    assert isinstance(error, RetryableConnectorError), repr(error)
    assert error.retryable
    expected = "40P01" if dialect == "postgresql" else "1213"
    assert expected in error.message and "deadlock" in error.message.lower()
    assert _rows(dialect, table) == [("A", "old", 0), ("B", "old", 0)]  # all rolled back

    _send(ctx)  # the engine's retry: the whole message again
    _send(ctx)  # and a duplicate delivery of it
    assert _rows(dialect, table) == [("A", "new", 1), ("B", "new", 2)]


@pytest.fixture
def serializable_database() -> Iterator[str]:
    """A PostgreSQL database whose sessions run SERIALIZABLE transactions by default, as a
    DBA may configure a target; the connector itself sets no isolation level."""
    _reachable(5432)
    name = f"fg_sqlc_{uuid.uuid4().hex[:10]}"
    admin = _connect("postgresql", autocommit=True)
    try:
        _run(admin, f'CREATE DATABASE "{name}"')
        _run(admin, f"ALTER DATABASE \"{name}\" SET default_transaction_isolation = 'serializable'")
        yield name
    finally:
        dispose_engines()
        _run(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_a_serialization_failure_is_retryable_and_the_retry_leaves_one_row_per_key(
    serializable_database: str,
) -> None:
    database, table = serializable_database, "stock"
    setup = _connect("postgresql", database, autocommit=True)
    try:
        _run(setup, f"CREATE TABLE {table} (sku VARCHAR(32) PRIMARY KEY, name TEXT, qty INTEGER)")
        _run(setup, f"INSERT INTO {table} VALUES ('A', 'old', 0), ('B', 'old', 0)")
    finally:
        setup.close()
    ctx = _ctx("postgresql", table, database)
    other = _connect("postgresql", database, autocommit=False)
    try:
        _run(other, f"UPDATE {table} SET qty = 10 WHERE sku = 'B'")  # holds B
        with ThreadPoolExecutor(1) as pool:
            sending = pool.submit(_send, ctx)  # its snapshot taken, it waits for B
            _wait_until_the_connector_waits("postgresql", table, database)
            other.commit()  # B changed after the connector's snapshot
            error = sending.exception(timeout=30)
    finally:
        other.close()

    assert isinstance(error, RetryableConnectorError), repr(error)
    assert error.retryable
    assert "40001" in error.message and "could not serialize" in error.message
    assert _rows("postgresql", table, database) == [("A", "old", 0), ("B", "old", 10)]

    _send(ctx)  # the retry, in a new transaction with a new snapshot
    _send(ctx)
    assert _rows("postgresql", table, database) == [("A", "new", 1), ("B", "new", 2)]
