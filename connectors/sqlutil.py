"""Shared pieces of the SQL destination: cached engines and tables, and failure classes.

SQLAlchemy and the drivers are imported inside functions, so importing this module (and the
registry) costs nothing and opens nothing.

Why a module-level engine cache: ``ConnectorContext`` has no lifecycle hook (no open/close)
and the registry builds a fresh connector object per call, so nothing else lives long enough
to hold a connection pool. Connecting anew per message would cost a TCP + TLS + auth round
trip each time. The cache is small (LRU), keyed by a hash of everything that identifies a
target (the checked IP and the password included, so a changed password or DNS answer makes a
new engine), evicted engines are disposed, pools are tiny with ``pool_pre_ping`` and a
recycle age, and an engine inherited across ``fork()`` (rq work horses) is dropped without
touching the parent's sockets. A cleaner design would give the context a resource scope
owned by the composition root (``ctx.resources.get(key, factory)``, closed at worker
shutdown and after fork); this module would then only supply the factory.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import quote

from connectors.base import ConnectorError, RetryableConnectorError
from connectors.redaction import Redactor

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine, Table

ENGINE_CACHE_SIZE = 8
TABLE_CACHE_SIZE = 64
# Long enough to spare a reflection per message, short enough that a migration is seen soon.
TABLE_TTL_SECONDS = 60.0
POOL_RECYCLE_SECONDS = 600
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
_MESSAGE_CHARS = 500

T = TypeVar("T")


class _LRU(Generic[T]):
    """A small thread-safe LRU whose entries remember the process that created them."""

    def __init__(self, size: int, on_evict: Callable[[T, bool], None] | None = None) -> None:
        self._size = size
        self._on_evict = on_evict
        self._lock = threading.Lock()
        self._items: OrderedDict[Any, tuple[int, float, T]] = OrderedDict()

    def get(self, key: Any, factory: Callable[[], T], ttl: float | None = None) -> T:
        pid, now = os.getpid(), time.monotonic()
        with self._lock:
            item = self._items.get(key)
            if item is not None and item[0] == pid and (ttl is None or now - item[1] < ttl):
                self._items.move_to_end(key)
                return item[2]
            if item is not None:
                self._evict(key)
        value = factory()  # outside the lock: reflection is a round trip
        with self._lock:
            if key in self._items:
                self._evict(key)
            self._items[key] = (pid, now, value)
            while len(self._items) > self._size:
                self._evict(next(iter(self._items)))
        return value

    def discard(self, key: Any) -> None:
        with self._lock:
            if key in self._items:
                self._evict(key)

    def clear(self) -> None:
        with self._lock:
            while self._items:
                self._evict(next(iter(self._items)))

    def _evict(self, key: Any) -> None:
        owner, _, value = self._items.pop(key)
        if self._on_evict is not None:
            self._on_evict(value, owner == os.getpid())


def _dispose(engine: Engine, own: bool) -> None:
    # close=False for an engine inherited across fork: its sockets belong to the parent.
    engine.dispose(close=own)


_engines: _LRU[Engine] = _LRU(ENGINE_CACHE_SIZE, _dispose)
_tables: _LRU[Table] = _LRU(TABLE_CACHE_SIZE)


@dataclass(frozen=True)
class Target:
    """A database to connect to, after the egress check; no secret in here (safe to repr)."""

    dialect: str  # postgresql | mysql | sqlite
    host: str = ""  # as configured: TLS verification and messages
    address: str = ""  # the checked IP the socket goes to
    port: int = 0
    database: str = ""
    username: str = ""
    sslmode: str | None = None
    application_name: str | None = None
    sqlite_path: str = ""
    timeout: float = 10.0

    def describe(self) -> str:
        if self.dialect == "sqlite":
            return f"sqlite file {self.sqlite_path}"
        return f"{self.dialect} at {self.host}:{self.port}/{self.database}"


@dataclass(frozen=True)
class Database:
    """An engine for a target, and its cache key."""

    target: Target
    engine: Engine
    key: str

    def table(self, conn: Connection, schema: str | None, name: str) -> Table:
        """The reflected table (cached for ``TABLE_TTL_SECONDS``); ConnectorError if unknown."""
        from sqlalchemy import MetaData
        from sqlalchemy import Table as SaTable
        from sqlalchemy.exc import NoSuchTableError

        def reflect() -> Table:
            try:
                return SaTable(name, MetaData(), schema=schema, autoload_with=conn)
            except NoSuchTableError:
                shown = f"{schema}.{name}" if schema else name
                raise ConnectorError(
                    f"unknown table {shown!r} in {self.target.describe()}"
                ) from None

        return _tables.get((self.key, schema, name), reflect, ttl=TABLE_TTL_SECONDS)

    def forget(self, schema: str | None, name: str) -> None:
        """Drop a cached table, e.g. after a failure that a migration may have caused."""
        _tables.discard((self.key, schema, name))


def dispose_engines() -> None:
    """Close every cached engine's pooled connections (worker shutdown, tests)."""
    _engines.clear()
    _tables.clear()


def database(target: Target, password: str) -> Database:
    """The cached engine for ``target`` (created lazily; connects only when used)."""
    digest = hashlib.sha256(repr((target, password)).encode()).hexdigest()
    engine = _engines.get(digest, lambda: _create_engine(target, password))
    return Database(target, engine, digest)


def _create_engine(target: Target, password: str) -> Engine:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    common: dict[str, Any] = {"hide_parameters": True}  # row values stay out of errors
    if target.dialect == "sqlite":
        # mode=rw: never create a file; the table has to exist anyway.
        uri = f"file:{quote(target.sqlite_path)}?mode=rw"

        def connect() -> Any:
            import sqlite3

            return sqlite3.connect(uri, uri=True, timeout=target.timeout)

        # Opening a local file is cheap; NullPool holds no file handle or lock between sends.
        return create_engine("sqlite+pysqlite://", creator=connect, poolclass=NullPool, **common)
    pooled: dict[str, Any] = {
        "pool_pre_ping": True,
        "pool_size": 2,
        "max_overflow": 3,
        "pool_timeout": target.timeout,
        "pool_recycle": POOL_RECYCLE_SECONDS,
    }
    if target.dialect == "postgresql":
        args = _postgres_args(target, password)
        return create_engine("postgresql+psycopg://", connect_args=args, **pooled, **common)
    args = _mysql_args(target, password)
    return create_engine("mysql+pymysql://", connect_args=args, **pooled, **common)


def _postgres_args(target: Target, password: str) -> dict[str, Any]:
    millis = max(1, round(target.timeout * 1000))
    args: dict[str, Any] = {
        "host": target.host,  # libpq verifies the certificate against this name...
        "hostaddr": target.address,  # ...but connects here, without resolving again
        "port": target.port,
        "dbname": target.database,
        "user": target.username,
        "password": password,
        "connect_timeout": max(2, round(target.timeout)),  # libpq: whole seconds, >= 2
        "options": f"-c statement_timeout={millis} -c lock_timeout={millis}",
        "tcp_user_timeout": millis,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        # Never fall back on the worker's own credentials (~/.pgpass, Kerberos tickets).
        "passfile": "/dev/null/no-pgpass",  # can never exist: no file, no libpq warning
        "gssencmode": "disable",
        "sslmode": target.sslmode or "prefer",
    }
    if target.application_name:
        args["application_name"] = target.application_name
    return args


def _mysql_args(target: Target, password: str) -> dict[str, Any]:
    args: dict[str, Any] = {
        "host": target.address,
        "port": target.port,
        "database": target.database,
        "user": target.username,
        "password": password,
        "charset": "utf8mb4",
        "connect_timeout": target.timeout,
        "read_timeout": target.timeout,
        "write_timeout": target.timeout,
        "local_infile": False,
    }
    mode = target.sslmode or "prefer"
    if mode == "disable":
        args["ssl_disabled"] = True
    elif mode != "prefer":
        args["ssl"] = _mysql_tls_context(mode, target.host)
    return args


def _mysql_tls_context(mode: str, server_name: str) -> Any:
    import ssl

    class PinnedNameContext(ssl.SSLContext):
        # PyMySQL passes the address it connected to as the TLS server name; verify-full
        # must check the configured name instead (as libpq does with hostaddr).
        def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> Any:
            kwargs["server_hostname"] = server_name
            return super().wrap_socket(sock, *args, **kwargs)

    context = PinnedNameContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if mode == "require":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_default_certs()
        context.check_hostname = mode == "verify-full"
        context.verify_mode = ssl.CERT_REQUIRED
    return context


# --- read-only SELECTs (reconciliation checks, connectors.sql_read) ---

_EXPLAIN = {"postgresql": "EXPLAIN ", "mysql": "EXPLAIN ", "sqlite": "EXPLAIN QUERY PLAN "}


def read_only_rows(
    db: Database,
    sql: str,
    params: dict[str, Any],
    *,
    max_rows: int,
    redact: Redactor,
    explain: bool = False,
) -> list[dict[str, Any]]:
    """Run one SELECT in a read-only transaction with a statement timeout (the target's
    ``timeout``); at most ``max_rows`` rows, more is a ConnectorError. ``explain``: only
    have the database plan it (syntax, tables, rights), nothing is read.

    The pooled connection is discarded afterwards: session settings made here (or by the
    SELECT, e.g. PostgreSQL's ``set_config``) must never reach the next user of the pool.
    """
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    deadline = time.monotonic() + db.target.timeout
    failure: ConnectorError | None = None
    rows: list[dict[str, Any]] = []
    try:
        with db.engine.connect() as conn:
            try:
                _read_only(conn, db.target, deadline, max_rows + 1)
                if explain:
                    conn.execute(text(_EXPLAIN[db.target.dialect] + sql), params).all()
                else:
                    # A huge result is never loaded whole: PostgreSQL reads it through a
                    # server-side cursor, MySQL stops at sql_select_limit (see _read_only),
                    # SQLite steps through it row by row anyway.
                    streamed = db.target.dialect == "postgresql"
                    result = conn.execution_options(stream_results=streamed).execute(
                        text(sql), params
                    )
                    try:
                        fetched = result.fetchmany(max_rows + 1)
                    finally:
                        result.close()  # before the invalidate below: closes the cursor
                    if len(fetched) > max_rows:
                        raise ConnectorError(
                            f"the SELECT returned more than {max_rows} rows: select only "
                            "the ids of the day, or a count"
                        )
                    rows = [dict(row._mapping) for row in fetched]
            finally:
                conn.invalidate()
    except ConnectorError as exc:
        failure = exc
    except SQLAlchemyError as exc:
        if time.monotonic() >= deadline:
            failure = RetryableConnectorError(
                f"the SELECT ran longer than {db.target.timeout:g} s (the connection's timeout)"
            )
        else:
            failure = classify(exc, redact, action="running the SELECT")
    if failure is not None:
        raise failure  # out here, so the driver's exception is not chained on
    return rows


def _read_only(conn: Connection, target: Target, deadline: float, row_limit: int) -> None:
    from sqlalchemy import text

    millis = max(1, round(target.timeout * 1000))
    if target.dialect == "postgresql":
        conn.execute(text("SET TRANSACTION READ ONLY"))
        conn.execute(text(f"SET LOCAL statement_timeout = {millis}"))
    elif target.dialect == "mysql":
        if conn.dialect.is_mariadb:  # type: ignore[attr-defined]
            conn.execute(text(f"SET SESSION max_statement_time = {millis / 1000:.3f}"))
        else:
            conn.execute(text(f"SET SESSION max_execution_time = {millis}"))
        # The server stops after row_limit rows (PyMySQL's streaming cursor cannot be
        # abandoned half read without a noisy drain).
        conn.execute(text(f"SET SESSION sql_select_limit = {int(row_limit)}"))
        conn.execute(text("START TRANSACTION READ ONLY"))
    else:
        conn.execute(text("PRAGMA query_only = ON"))
        raw = conn.connection.driver_connection
        # SQLite has no statement timeout: its progress handler aborts a running statement.
        raw.set_progress_handler(lambda: int(time.monotonic() >= deadline), 10_000)


# --- failure classes ---

# PostgreSQL SQLSTATE: connection exceptions, transaction rollbacks (serialization failure,
# deadlock), insufficient resources; plus lock/statement timeouts and server shutdowns.
_PG_RETRYABLE_CLASSES = ("08", "40", "53")
_PG_RETRYABLE_STATES = frozenset({"55P03", "57014", "57P01", "57P02", "57P03", "58000", "58030"})
# A FATAL answer at connect time carries no SQLSTATE in psycopg; these ones are transient.
_PG_TRANSIENT_FATAL = re.compile(
    r"starting up|shutting down|too many (clients|connections)|connection slots|recovery mode"
    r"|administrator command",
    re.IGNORECASE,
)
_PG_PERMANENT_CONNECT = re.compile(r"FATAL:|SSL was required|certificate|invalid sslmode")
# MySQL/MariaDB error numbers (server 1xxx, client 2xxx) worth retrying.
_MYSQL_RETRYABLE = frozenset(
    {1040, 1053, 1152, 1153, 1158, 1159, 1160, 1161, 1205, 1213, 1927, 1969, 3024}
    | {2002, 2003, 2005, 2006, 2013, 2055}
)
_SQLITE_RETRYABLE = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED"})
_TRANSIENT_DBAPI = ("OperationalError", "InterfaceError", "InternalError")


def classify(exc: Exception, redact: Redactor, *, action: str) -> ConnectorError:
    """A ConnectorError (permanent) or RetryableConnectorError (transient) for ``exc``.

    The message carries the driver's own text (redacted, first lines, truncated) and never
    SQLAlchemy's statement/parameter dump.
    """
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection came free in time
        return RetryableConnectorError(f"{action} failed: connection pool exhausted")
    orig = getattr(exc, "orig", None)
    if not isinstance(orig, Exception):
        text = _clean(str(exc.args[0]) if exc.args else exc.__class__.__name__, redact)
        return ConnectorError(f"{action} failed: {text}")
    text = _clean(_driver_text(orig), redact)
    error_class = RetryableConnectorError if _retryable(orig) else ConnectorError
    return error_class(f"{action} failed: {text}")


def _driver_text(orig: Exception) -> str:
    args = orig.args
    if len(args) >= 2 and isinstance(args[0], int):  # PyMySQL: (errno, message)
        return f"({args[0]}) {args[1]}"
    text = str(orig) or orig.__class__.__name__
    state = getattr(orig, "sqlstate", None)  # psycopg
    return f"[{state}] {text}" if state else text


def _retryable(orig: Exception) -> bool:
    module = type(orig).__module__.split(".")[0]
    if module == "psycopg":
        state = getattr(orig, "sqlstate", None)
        if state:
            return state[:2] in _PG_RETRYABLE_CLASSES or state in _PG_RETRYABLE_STATES
        text = str(orig)
        if _PG_TRANSIENT_FATAL.search(text):
            return True
        if _PG_PERMANENT_CONNECT.search(text):  # auth, unknown db/role, TLS mismatch
            return False
    elif module == "pymysql" and orig.args and isinstance(orig.args[0], int):
        return orig.args[0] in _MYSQL_RETRYABLE
    elif module == "sqlite3":
        return getattr(orig, "sqlite_errorname", None) in _SQLITE_RETRYABLE
    return type(orig).__name__ in _TRANSIENT_DBAPI


def _clean(text: str, redact: Redactor) -> str:
    lines = [line.strip() for line in redact(text).splitlines() if line.strip()]
    joined = " ".join(lines)
    if len(joined) > _MESSAGE_CHARS:
        joined = joined[: _MESSAGE_CHARS - 3] + "..."
    return joined
