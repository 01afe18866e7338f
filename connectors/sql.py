"""SQL destination: insert or upsert each message as rows of an existing table.

PostgreSQL (psycopg), MySQL/MariaDB (PyMySQL) and SQLite, through SQLAlchemy Core. The
table and its columns are looked up in the database (reflection, cached for a minute) and
only reflected names reach a statement, quoted by SQLAlchemy; values are always bound
parameters. A message is one row (an object) or several (an array of objects) written in one
transaction. Upserts use the dialect's native statement on ``key_columns``, which must be the
table's primary key or a unique key, so re-sending a message leaves one row. With
``newer_column`` an upsert only replaces a stored row whose value there is older (or NULL),
so events that arrive out of order never overwrite newer data.

Network databases are reached only at an address the egress policy allowed (the host is
resolved and checked once; the driver connects to that IP). Engines are cached per target;
see ``connectors.sqlutil`` for why and how, and ``connectors.sqlplan`` for the statements.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from connectors.base import (
    CheckResult,
    ConnectorContext,
    ConnectorError,
    ConnectorSpec,
    Destination,
    SendResult,
)
from connectors.config import config_problems
from connectors.egress import checked_addresses
from connectors.redaction import Redactor
from connectors.sqlplan import Tally, plan, rows_of, tally
from connectors.sqlutil import DEFAULT_PORTS, Database, Target, classify, database

_DIALECTS = ("postgresql", "mysql", "sqlite")
_SSLMODES = ("disable", "prefer", "require", "verify-ca", "verify-full")
_IDENT = r"[A-Za-z_][A-Za-z0-9_$]{0,62}"
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
_COLUMN_NAME = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": _PRINTABLE}
_DEFAULT_TIMEOUT_SECONDS = 10.0

CONNECTION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "SQL database connection",
    "properties": {
        "dialect": {
            "type": "string",
            "title": "Database",
            "description": "postgresql, mysql (also MariaDB) or sqlite.",
            "enum": list(_DIALECTS),
        },
        "host": {
            "type": "string",
            "title": "Host",
            "description": "Server name or IP address (PostgreSQL, MySQL). It must be allowed "
            "by the egress policy.",
            "pattern": r"^[A-Za-z0-9_:][A-Za-z0-9._:-]*$",
            "maxLength": 253,
            "errorMessage": {"pattern": "must be a host name or an IP address"},
        },
        "port": {
            "type": "integer",
            "title": "Port",
            "description": "Defaults to 5432 (PostgreSQL) or 3306 (MySQL).",
            "minimum": 1,
            "maximum": 65535,
        },
        "database": {
            "type": "string",
            "title": "Database name",
            "pattern": _PRINTABLE,
            "maxLength": 128,
        },
        "username": {"type": "string", "title": "User", "pattern": _PRINTABLE, "maxLength": 128},
        "sqlite_path": {
            "type": "string",
            "title": "SQLite file",
            "description": "Absolute path of an existing SQLite database file (sqlite only). "
            "The file is never created.",
            "pattern": r"^/[^\x00]*$",
            "not": {"pattern": r"(^|/)\.{1,2}(/|$)"},
            "maxLength": 1024,
            "errorMessage": {
                "pattern": "must be an absolute path",
                "not": "cannot contain . or .. segments",
            },
        },
        "options": {
            "type": "object",
            "title": "Options",
            "properties": {
                "sslmode": {
                    "type": "string",
                    "title": "TLS mode",
                    "description": "As libpq's sslmode (MySQL too): prefer uses TLS if the "
                    "server offers it; verify-full also checks the host name.",
                    "enum": list(_SSLMODES),
                    "default": "prefer",
                },
                "application_name": {
                    "type": "string",
                    "title": "Application name",
                    "description": "Shown in pg_stat_activity (PostgreSQL).",
                    "pattern": _PRINTABLE,
                    "maxLength": 63,
                },
            },
            "additionalProperties": False,
            "default": {},
        },
        "timeout_seconds": {
            "type": "number",
            "title": "Timeout (seconds)",
            "description": "Connect timeout, and the longest a statement may run.",
            "default": _DEFAULT_TIMEOUT_SECONDS,
            "minimum": 0.5,
            "maximum": 120,
        },
    },
    "required": ["dialect"],
    "additionalProperties": False,
    "allOf": [
        {
            "if": {"properties": {"dialect": {"const": "sqlite"}}, "required": ["dialect"]},
            "then": {"required": ["sqlite_path"]},
            "else": {"required": ["host", "database", "username"]},
        }
    ],
}

STEP_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "Write rows",
    "properties": {
        "table": {
            "type": "string",
            "title": "Table",
            "description": "An existing table, optionally schema-qualified (sales.orders).",
            "pattern": f"^{_IDENT}(\\.{_IDENT})?$",
            "errorMessage": {"pattern": "must be table or schema.table (letters, digits, _, $)"},
        },
        "mode": {
            "type": "string",
            "title": "Mode",
            "description": "insert adds rows; upsert inserts or updates the row with the same "
            "key (re-sending a message then leaves one row).",
            "enum": ["insert", "upsert"],
            "default": "insert",
        },
        "key_columns": {
            "type": "array",
            "title": "Key columns",
            "description": "For upsert: the columns of the primary key or of a unique key.",
            "items": _COLUMN_NAME,
            "minItems": 1,
            "maxItems": 16,
            "uniqueItems": True,
        },
        "columns": {
            "type": "object",
            "title": "Column mapping",
            "description": "Message field -> column. When set, only these fields are written; "
            "when empty, each field goes to the column of the same name.",
            "propertyNames": {"maxLength": 256},
            "additionalProperties": _COLUMN_NAME,
            "default": {},
        },
        "newer_column": {
            **_COLUMN_NAME,
            "title": "Only newer rows",
            "description": "Upsert only: a column such as updated_at or version. A row whose "
            "value here is not newer than the stored row's is skipped, so an event that arrives "
            "late never overwrites newer data (an equal value is skipped too; a stored empty "
            "value is always replaced; an empty incoming value never replaces a stored one). "
            "Every row must carry this column, and it cannot be a key column.",
            "errorMessage": {"pattern": "must be a column name (no control characters)"},
        },
        "unknown_fields": {
            "type": "string",
            "title": "Unknown fields",
            "description": "What to do with a message field that has no column: fail the "
            "delivery (error) or leave it out (ignore).",
            "enum": ["error", "ignore"],
            "default": "error",
        },
    },
    "required": ["table"],
    "additionalProperties": False,
    "allOf": [
        {
            "if": {"properties": {"mode": {"const": "upsert"}}, "required": ["mode"]},
            "then": {"required": ["key_columns"]},
        },
        {
            "if": {"not": {"properties": {"mode": {"const": "upsert"}}, "required": ["mode"]}},
            "then": {
                "properties": {
                    "newer_column": {
                        "not": {},
                        "errorMessage": "only applies with mode upsert (an insert never "
                        "overwrites a row)",
                    }
                }
            },
        },
    ],
}

SPEC = ConnectorSpec(
    key="sql",
    name="SQL database",
    kind="destination",
    version=1,
    description="Insert or upsert each message as rows of an existing PostgreSQL, MySQL/MariaDB "
    "or SQLite table.",
    connection_schema=CONNECTION_SCHEMA,
    secret_fields=("password",),
    step_schema=STEP_SCHEMA,
    requires_connection=True,
    # Upsert mode is idempotent; insert mode relies on the table's own unique keys.
    idempotency="upsert",
)

_VERSION_SQL = {
    "postgresql": ("PostgreSQL", "SHOW server_version"),
    "mysql": ("MySQL", "SELECT VERSION()"),
    "sqlite": ("SQLite", "SELECT sqlite_version()"),
}


def semantic_problems(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What JSON Schema cannot say: how newer_column relates to key_columns and columns."""
    newer = config.get("newer_column")
    if not isinstance(newer, str):
        return []
    problems: list[tuple[str, str]] = []
    if newer in (config.get("key_columns") or []):
        problems.append(
            (
                "/newer_column",
                f"{newer!r} is a key column, equal in the stored and the incoming row: choose "
                "a column that changes with each event, such as updated_at or version",
            )
        )
    mapping = config.get("columns") or {}
    if mapping and newer not in mapping.values():
        problems.append(
            (
                "/newer_column",
                f"{newer!r} is not a mapped column: map a message field to it "
                "in the column mapping",
            )
        )
    return problems


class SqlDestination(Destination):
    """Writes each message as one or more rows; see the module docstring for the rules."""

    spec = SPEC
    # Called by flow validation after the JSON Schema passed (problems at /steps/N/config/...).
    semantic_problems = staticmethod(semantic_problems)

    def send(self, ctx: ConnectorContext, message: Any, *, idempotency_key: str) -> SendResult:
        """Insert or upsert the row(s) of ``message`` in one transaction."""
        from sqlalchemy.exc import SQLAlchemyError

        step = _checked(STEP_SCHEMA, ctx.step_config, "step config", semantic_problems)
        schema, _, name = str(step["table"]).rpartition(".")
        rows = rows_of(message)
        db = _open(ctx)
        redact = Redactor(ctx.secrets.values())
        started = time.monotonic()
        failure: ConnectorError | None = None
        counted = Tally()
        newer = step.get("newer_column")
        try:
            with db.engine.begin() as conn:
                table = db.table(conn, schema or None, name)
                for statement, params in plan(table, step, rows, db.target.dialect):
                    result = conn.execute(statement, params)
                    if newer:
                        counted.add(tally(db.target.dialect, result, len(params)))
        except ConnectorError as exc:
            failure = exc
        except SQLAlchemyError as exc:
            failure = classify(exc, redact, action=f"writing to {step['table']}")
        if failure is not None:
            # Raised out here so the driver's exception is not chained on as __context__.
            db.forget(schema or None, name)  # a migration may have changed the table
            raise failure
        elapsed_ms = round((time.monotonic() - started) * 1000)
        mode = step.get("mode", "insert")
        ctx.logger.info(
            "connector.sql.sent dialect=%s table=%s mode=%s rows=%d elapsed_ms=%d%s",
            db.target.dialect,
            step["table"],
            mode,
            len(rows),
            elapsed_ms,
            f" written={counted.written} skipped={counted.skipped} unsure={counted.unsure}"
            if newer
            else "",
        )
        if newer:
            return SendResult(None, counted.summary(str(step["table"]), newer))
        verb = "upserted" if mode == "upsert" else "inserted"
        return SendResult(None, f"{verb} {len(rows)} row(s) into {step['table']}")

    def check(self, ctx: ConnectorContext) -> CheckResult:
        """Connect and report the server version."""
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        try:
            db = _open(ctx)
        except ConnectorError as exc:
            return CheckResult(ok=False, message=exc.message)
        label, query = _VERSION_SQL[db.target.dialect]
        started = time.monotonic()
        error: ConnectorError | None = None
        try:
            with db.engine.connect() as conn:
                version = str(conn.execute(text(query)).scalar())
        except SQLAlchemyError as exc:
            error = classify(exc, Redactor(ctx.secrets.values()), action="connecting")
        if error is not None:
            return CheckResult(ok=False, message=error.message)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        return CheckResult(
            ok=True, message=f"{label} {version} ({db.target.describe()}) in {elapsed_ms} ms"
        )


def _checked(
    schema: Mapping[str, Any],
    value: Mapping[str, Any],
    what: str,
    semantic: Callable[[Mapping[str, Any]], list[tuple[str, str]]] | None = None,
) -> dict[str, Any]:
    # Re-checked at run time: stored configs may predate a schema change.
    problems = config_problems(schema, dict(value))
    if not problems and semantic is not None:
        problems = semantic(dict(value))
    if problems:
        listed = "; ".join(f"{path or '/'} {message}" for path, message in problems)
        raise ConnectorError(f"invalid {what}: {listed}")
    return dict(value)


def _open(ctx: ConnectorContext) -> Database:
    """Check the connection config and the egress policy; the (cached) engine to use."""
    config = _checked(CONNECTION_SCHEMA, ctx.connection_config, "connection config")
    dialect = str(config["dialect"])
    options = config.get("options") or {}
    timeout = float(config.get("timeout_seconds", ctx.timeout_seconds))
    password = ctx.secrets.get("password") or ""
    if dialect == "sqlite":
        return database(Target("sqlite", sqlite_path=config["sqlite_path"], timeout=timeout), "")
    host, port = str(config["host"]), int(config.get("port") or DEFAULT_PORTS[dialect])
    if ctx.egress is None:
        raise ConnectorError(f"no egress policy: refusing to connect to {host}:{port}")
    address = checked_addresses(ctx.egress, host, port)[0]
    target = Target(
        dialect=dialect,
        host=host,
        address=address,
        port=port,
        database=str(config["database"]),
        username=str(config["username"]),
        sslmode=options.get("sslmode"),
        application_name=options.get("application_name"),
        timeout=timeout,
    )
    return database(target, password)


CONNECTOR = SqlDestination
