"""SqlDestination against real databases: PostgreSQL and MariaDB on 127.0.0.1, a SQLite file.

Each test gets its own uniquely named table, dropped afterwards. When PostgreSQL or MariaDB
is unreachable its half is skipped locally and fails under CI=true, as in tests/conftest.py.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from connectors.base import ConnectorContext, ConnectorError, RetryableConnectorError
from connectors.config import config_problems
from connectors.egress import EgressDenied, EgressPolicy
from connectors.redaction import MASK
from connectors.sql import SPEC, SqlDestination
from connectors.sqlutil import Target, database, dispose_engines

LOOPBACK = EgressPolicy.from_cidrs(["127.0.0.0/8"])
CANARY = "pw-CANARY-5e4d3c2b1a"
PG = {"dialect": "postgresql", "host": "127.0.0.1", "port": 5432, "database": "test"}
MY = {"dialect": "mysql", "host": "127.0.0.1", "port": 3306, "database": "test"}


@dataclass
class Backend:
    name: str
    connection: dict[str, Any]
    run: Callable[[str], list[tuple[Any, ...]]]  # admin SQL, outside the connector
    timestamp: str
    json: str

    def ctx(
        self,
        step: dict[str, Any] | None = None,
        *,
        secrets: dict[str, str] | None = None,
        egress: Any = LOOPBACK,
        **connection: Any,
    ) -> ConnectorContext:
        return ConnectorContext(
            connection_config={**self.connection, **connection},
            secrets=dict(secrets or {}),
            step_config=dict(step or {}),
            logger=logging.getLogger("tests.connectors.sql"),
            http=None,
            egress=egress,
        )


def _reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        if os.environ.get("CI"):
            raise
        return False


def _runner(conn: Any) -> Callable[[str], list[tuple[Any, ...]]]:
    def run(sql: str) -> list[tuple[Any, ...]]:
        cur = conn.cursor()
        try:
            cur.execute(sql)
            return list(cur.fetchall()) if cur.description else []
        finally:
            cur.close()

    return run


def _admin(name: str, path: Path) -> Any:
    if name == "postgresql":
        if not _reachable(5432):
            pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432")
        return psycopg.connect(host="127.0.0.1", user="postgres", dbname="test", autocommit=True)
    if name == "mysql":
        if not _reachable(3306):
            pytest.skip("MariaDB not reachable on 127.0.0.1:3306")
        return pymysql.connect(host="127.0.0.1", user="root", database="test", autocommit=True)
    return sqlite3.connect(path, isolation_level=None)


@pytest.fixture(scope="module", params=["postgresql", "mysql", "sqlite"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """One server (or SQLite file) and an admin connection per module, to keep DDL rare."""
    path = tmp_path_factory.mktemp("sqlite") / "shop.db"
    conn = _admin(request.param, path)
    connection, timestamp, json = {
        "postgresql": ({**PG, "username": "postgres"}, "timestamp", "jsonb"),
        "mysql": ({**MY, "username": "root"}, "datetime", "json"),
        "sqlite": ({"dialect": "sqlite", "sqlite_path": str(path)}, "timestamp", "json"),
    }[request.param]
    yield Backend(request.param, connection, _runner(conn), timestamp, json)
    conn.close()


@pytest.fixture(scope="module")
def shared_table(backend: Backend) -> Iterator[str]:
    name = f"fg_sql_{uuid.uuid4().hex[:10]}"  # the servers are shared: never a fixed name
    backend.run(
        f"CREATE TABLE {name} (sku VARCHAR(32) NOT NULL PRIMARY KEY, name VARCHAR(100) NOT NULL,"
        f" qty INTEGER, updated_at {backend.timestamp} NULL, doc {backend.json} NULL,"
        " note TEXT)"
    )
    yield name
    backend.run(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def table(backend: Backend, shared_table: str) -> str:
    """The module's table, emptied for this test."""
    backend.run(f"DELETE FROM {shared_table}")
    return shared_table


@pytest.fixture(autouse=True, scope="module")
def _close_engines() -> Iterator[None]:
    yield
    dispose_engines()


def send(ctx: ConnectorContext, message: Any) -> Any:
    return SqlDestination().send(ctx, message, idempotency_key="run-1:save")


def rows(backend: Backend, table: str, columns: str = "sku, name, qty") -> list[tuple[Any, ...]]:
    return [tuple(r) for r in backend.run(f"SELECT {columns} FROM {table} ORDER BY sku")]


# --- happy paths ---


def test_check_reports_the_server_version(backend: Backend) -> None:
    result = SqlDestination().check(backend.ctx())
    assert result.ok, result.message
    label = {"postgresql": "PostgreSQL 1", "mysql": "MySQL 1", "sqlite": "SQLite 3."}
    assert result.message.startswith(label[backend.name])


def test_inserts_rows_with_values_bound_not_interpolated(backend: Backend, table: str) -> None:
    evil = f"x'); DROP TABLE {table}; --"
    message = [
        {"sku": "A-1", "name": evil, "qty": 2, "updated_at": "2024-05-06T07:08:09"},
        {"sku": "B-2", "name": "Zoë", "doc": {"lines": [1, 2]}, "note": None},
    ]
    result = send(backend.ctx({"table": table}), message)
    assert result.response_excerpt == f"inserted 2 row(s) into {table}"
    assert rows(backend, table) == [("A-1", evil, 2), ("B-2", "Zoë", None)]
    [(stamp,)] = backend.run(f"SELECT updated_at FROM {table} WHERE sku = 'A-1'")
    assert str(stamp).startswith("2024-05-06")


def test_upsert_twice_leaves_one_row_with_the_latest_values(backend: Backend, table: str) -> None:
    ctx = backend.ctx({"table": table, "mode": "upsert", "key_columns": ["sku"]})
    send(ctx, {"sku": "A-1", "name": "first", "qty": 1})
    send(ctx, {"sku": "A-1", "name": "first", "qty": 1})  # a retried delivery
    assert rows(backend, table) == [("A-1", "first", 1)]
    send(ctx, {"sku": "A-1", "name": "second", "qty": 5})
    assert rows(backend, table) == [("A-1", "second", 5)]


def test_upsert_applies_repeated_keys_in_message_order(backend: Backend, table: str) -> None:
    ctx = backend.ctx({"table": table, "mode": "upsert", "key_columns": ["sku"]})
    send(ctx, [{"sku": "A", "name": "v1"}, {"sku": "B", "name": "b"}, {"sku": "A", "name": "v2"}])
    assert rows(backend, table, "sku, name") == [("A", "v2"), ("B", "b")]


def test_a_bad_row_rolls_back_the_whole_batch(backend: Backend, table: str) -> None:
    # Different column sets make separate statements: the first one succeeds, then rolls back.
    message = [
        {"sku": "A", "name": "fine"},
        {"sku": "B", "name": "fine", "qty": 1},
        {"sku": "C", "name": None, "qty": 2},  # NOT NULL violated
    ]
    with pytest.raises(ConnectorError, match=f"writing to {table} failed") as info:
        send(backend.ctx({"table": table}), message)
    assert not info.value.retryable
    assert rows(backend, table) == []


def test_column_mapping_and_ignored_fields(backend: Backend, table: str) -> None:
    step = {
        "table": table,
        "columns": {"id": "sku", "title": "name"},
        "unknown_fields": "ignore",
    }
    send(backend.ctx(step), {"id": "A", "title": "Mapped", "name": "not mapped", "extra": 1})
    assert rows(backend, table) == [("A", "Mapped", None)]


# --- permanent failures, named ---


def test_unknown_table_is_permanent_and_named(backend: Backend) -> None:
    with pytest.raises(ConnectorError, match="unknown table 'no_such_table'") as info:
        send(backend.ctx({"table": "no_such_table"}), {"sku": "A"})
    assert not info.value.retryable


@pytest.mark.parametrize("field", ["colour", "name = 'x'; DROP TABLE t; --", 'name" text, "x'])
def test_unknown_or_injected_column_is_refused_and_named(
    field: str, backend: Backend, table: str
) -> None:
    with pytest.raises(ConnectorError, match="unknown column") as info:
        send(backend.ctx({"table": table}), {"sku": "A", "name": "n", field: "v"})
    assert not info.value.retryable
    assert repr(field) in info.value.message
    assert rows(backend, table) == []  # the table is still there, and untouched


def test_injection_in_the_table_name_is_refused_by_the_schema(backend: Backend, table: str) -> None:
    with pytest.raises(ConnectorError, match="invalid step config: /table"):
        send(backend.ctx({"table": f"{table}; DROP TABLE {table}"}), {"sku": "A"})
    assert rows(backend, table) == []


def test_upsert_on_columns_without_a_unique_key_is_refused(backend: Backend, table: str) -> None:
    ctx = backend.ctx({"table": table, "mode": "upsert", "key_columns": ["name"]})
    with pytest.raises(ConnectorError, match="not the primary key or a unique key"):
        send(ctx, {"sku": "A", "name": "n"})


def test_upsert_row_without_its_key_is_refused(backend: Backend, table: str) -> None:
    ctx = backend.ctx({"table": table, "mode": "upsert", "key_columns": ["sku"]})
    with pytest.raises(ConnectorError, match="row 1: key column 'sku' has no value"):
        send(ctx, [{"sku": "A", "name": "n"}, {"name": "m"}])
    assert rows(backend, table) == []


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ([], "empty array"),
        ([{"sku": "A", "name": "n"}, "oops"], "row 1: expected an object"),
        ({"sku": "A", "name": "n", "qty": {"a": 1}}, "cannot hold an object"),
        ({"sku": "A", "name": "n", "updated_at": "yesterday"}, "needs an ISO 8601 value"),
    ],
)
def test_malformed_messages_are_permanent(
    message: Any, expected: str, backend: Backend, table: str
) -> None:
    with pytest.raises(ConnectorError, match=expected) as info:
        send(backend.ctx({"table": table}), message)
    assert not info.value.retryable


# --- connection failures: transient vs permanent, and secrets ---

NETWORK = ["postgresql", "mysql"]


@pytest.mark.parametrize("backend", NETWORK, indirect=True)
def test_closed_port_is_retryable_and_check_says_why(backend: Backend, closed_port: int) -> None:
    ctx = backend.ctx({"table": "orders"}, port=closed_port)
    with pytest.raises(RetryableConnectorError, match="(?i)refused|can't connect"):
        send(ctx, {"sku": "A"})
    result = SqlDestination().check(ctx)
    assert not result.ok
    assert "refused" in result.message.lower()


def _every_text(error: BaseException) -> str:
    texts = []
    current: BaseException | None = error
    while current is not None:
        texts += [str(current), repr(current), getattr(current, "message", "")]
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


@pytest.mark.parametrize("backend", NETWORK, indirect=True)
def test_bad_credentials_are_permanent_and_never_leak_the_password(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")  # pool and engine chatter too
    # The local PostgreSQL trusts every role, so an unknown role stands in for a bad password.
    user = "no_such_role_fg" if backend.name == "postgresql" else "root"
    ctx = backend.ctx({"table": "orders"}, secrets={"password": CANARY}, username=user)
    with pytest.raises(ConnectorError) as info:
        send(ctx, {"sku": "A"})
    assert not info.value.retryable
    expected = "role" if backend.name == "postgresql" else "Access denied"
    assert expected in info.value.message
    result = SqlDestination().check(ctx)
    assert not result.ok and expected in result.message
    assert CANARY not in _every_text(info.value) + result.message
    logged = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert caplog.records and not any(CANARY in text for text in logged)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_secret_echoed_by_the_database_is_masked(backend: Backend, table: str) -> None:
    secret = "SKU-CANARY-7a6b5c"  # short enough to be a key value too
    ctx = backend.ctx({"table": table}, secrets={"password": secret})
    send(ctx, {"sku": secret, "name": "n"})
    with pytest.raises(ConnectorError, match="23505") as info:  # DETAIL: Key (sku)=(...)
        send(ctx, {"sku": secret, "name": "n"})
    assert f"Key (sku)=({MASK})" in info.value.message
    assert secret not in _every_text(info.value)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback port that accepts TCP connections but never answers (libpq connects from C,
    out of sight of the conftest's socket seatbelt, so we watch the other end instead)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.settimeout(0.05)  # a connect() would already sit in the backlog
        yield sock


def assert_nobody_knocked(listener: socket.socket) -> None:
    with pytest.raises(TimeoutError):
        listener.accept()


@pytest.mark.parametrize("backend", NETWORK, indirect=True)
def test_egress_refusal_sends_nothing(backend: Backend, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    ctx = backend.ctx({"table": "orders"}, egress=EgressPolicy(), port=port)
    with pytest.raises(EgressDenied, match="loopback"):
        send(ctx, {"sku": "A"})
    result = SqlDestination().check(ctx)
    assert not result.ok and "refused (loopback)" in result.message
    assert_nobody_knocked(listener)


@pytest.mark.parametrize("backend", NETWORK, indirect=True)
def test_no_egress_policy_is_refused(backend: Backend, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    with pytest.raises(ConnectorError, match="no egress policy"):
        send(backend.ctx({"table": "orders"}, egress=None, port=port), {"sku": "A"})
    assert_nobody_knocked(listener)


@pytest.mark.parametrize("backend", NETWORK, indirect=True)
def test_connects_to_the_checked_address_not_the_name(backend: Backend, fake_dns: Any) -> None:
    # Only checked_addresses may resolve the name: libpq and PyMySQL get the checked IP (an
    # unknown name would fail to resolve in here, see the conftest's numeric-only DNS).
    fake_dns.set("db.shop.example", ["127.0.0.1"])
    result = SqlDestination().check(backend.ctx(host="db.shop.example", timeout_seconds=3))
    assert result.ok, result.message
    assert fake_dns.lookups == ["db.shop.example"]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_lock_timeout_is_retryable(backend: Backend, table: str) -> None:
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="test") as holder:
        holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")  # type: ignore[arg-type]
        ctx = backend.ctx({"table": table}, timeout_seconds=0.5)
        with pytest.raises(RetryableConnectorError, match="55P03|57014"):
            send(ctx, {"sku": "A", "name": "n"})


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_locked_sqlite_file_is_retryable(backend: Backend, table: str) -> None:
    holder = sqlite3.connect(backend.connection["sqlite_path"], isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        ctx = backend.ctx({"table": table}, timeout_seconds=0.5)
        with pytest.raises(RetryableConnectorError, match="locked"):
            send(ctx, {"sku": "A", "name": "n"})
    finally:
        holder.close()


@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
def test_tls_required_by_a_server_without_tls_is_permanent(backend: Backend) -> None:
    ctx = backend.ctx({"table": "orders"}, options={"sslmode": "require"})
    with pytest.raises(ConnectorError, match="(?i)ssl|tls") as info:
        send(ctx, {"sku": "A"})
    assert not info.value.retryable


def test_sqlite_file_is_never_created(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    ctx = ConnectorContext(
        {"dialect": "sqlite", "sqlite_path": str(missing)},
        {},
        {"table": "orders"},
        logging.getLogger("tests.connectors.sql"),
        None,
    )
    with pytest.raises(ConnectorError, match="unable to open") as info:
        send(ctx, {"sku": "A"})
    assert not info.value.retryable
    assert not missing.exists()
    assert not SqlDestination().check(ctx).ok


def test_engines_are_cached_per_target_and_password() -> None:
    target = Target("postgresql", "db.example", "192.0.2.10", 5432, "shop", "app")
    first = database(target, "pw-one")
    assert first.engine is database(target, "pw-one").engine
    assert first.engine is not database(target, "pw-two").engine
    moved = Target("postgresql", "db.example", "192.0.2.11", 5432, "shop", "app")
    assert database(moved, "pw-one").key != first.key  # a new DNS answer, a new engine
    assert "pw-one" not in repr(first) + first.key


# --- schema ---


def test_connection_schema_problems() -> None:
    schema = SPEC.connection_schema
    assert config_problems(schema, {**PG, "username": "app"}) == []
    assert config_problems(schema, {"dialect": "sqlite", "sqlite_path": "/srv/shop.db"}) == []
    assert config_problems(schema, {"dialect": "postgresql"}) == [
        ("/database", "is required"),
        ("/host", "is required"),
        ("/username", "is required"),
    ]
    assert config_problems(schema, {"dialect": "sqlite", "sqlite_path": "shop.db"}) == [
        ("/sqlite_path", "must be an absolute path")
    ]
    assert config_problems(schema, {"dialect": "sqlite", "sqlite_path": "/srv/../etc/x"}) == [
        ("/sqlite_path", "cannot contain . or .. segments")
    ]
    problems = config_problems(schema, {**PG, "username": "a", "password": "pw", "port": 0})
    assert ("/password", "is not a known field") in problems  # secrets never go in config
    assert [p for p, _ in problems] == ["/password", "/port"]
    bad_host = config_problems(schema, {**PG, "username": "a", "host": "-oProxyCommand=x"})
    assert bad_host == [("/host", "must be a host name or an IP address")]


def test_step_schema_problems() -> None:
    schema = SPEC.step_schema
    assert config_problems(schema, {"table": "sales.orders", "mode": "insert"}) == []
    assert config_problems(schema, {"table": "orders", "mode": "upsert"}) == [
        ("/key_columns", "is required")
    ]
    assert config_problems(schema, {"table": "orders; DROP TABLE x"}) == [
        ("/table", "must be table or schema.table (letters, digits, _, $)")
    ]
    assert [p for p, _ in config_problems(schema, {"table": "t", "mode": "merge"})] == ["/mode"]
    assert [p for p, _ in config_problems(schema, {})] == ["/table"]


def test_spec_declares_upsert_idempotency_and_the_password_secret() -> None:
    assert (SPEC.key, SPEC.kind, SPEC.idempotency) == ("sql", "destination", "upsert")
    assert SPEC.secret_fields == ("password",)
    for schema in (SPEC.connection_schema, SPEC.step_schema):
        assert schema["additionalProperties"] is False
        assert all("title" in prop for prop in schema["properties"].values())
