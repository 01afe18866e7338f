"""SQL poll trigger: read new or changed rows of a table by a watermark column.

The scheduler calls ``poll(ctx, state)`` at the trigger's interval. A poll reads at most
``page_size`` rows ordered by ``(watermark_column, id_column)`` strictly after the saved
position (keyset pagination: ``wm > :wm OR (wm = :wm AND id > :id)``), so rows sharing a
watermark value are never skipped at a page boundary. Rows whose watermark is NULL are not
read. Each row becomes one run's message (column -> value; times as ISO 8601 strings,
decimals as numbers).

A row's dedupe id is ``<id>@<watermark>``; the run's event id ``poll:<flow id>:<that>`` is
unique per flow in the run ledger, so a row fires once per watermark value (an update that
moves ``updated_at`` fires again; a crash before the position is saved fires nothing twice).
The watermark must only grow for changed rows (an ``updated_at`` set on every write, or a
sequence); rows written later with an older watermark are not seen.

The connection is a ``poll_sql`` connection with the ``sql`` destination's settings
(PostgreSQL, MySQL/MariaDB, SQLite; egress-checked), secret ``password``. Nothing is written.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from decimal import Decimal
from typing import Any

from connectors import sql as sql_destination
from connectors.base import (
    CheckResult,
    ConnectorContext,
    ConnectorError,
    ConnectorSpec,
    PolledItem,
    Poller,
    PollPage,
)
from connectors.redaction import Redactor
from connectors.sqlutil import classify

_MARK = "_flowgate_watermark"
_COLUMN = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"^[^\x00-\x1f\x7f]+$"}

STEP_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "Poll a SQL table",
    "properties": {
        "table": {
            **sql_destination.STEP_SCHEMA["properties"]["table"],
            "description": "The table or view to read, optionally schema-qualified.",
        },
        "watermark_column": {
            **_COLUMN,
            "title": "Watermark column",
            "description": "A column that grows for new and changed rows (updated_at, a sequence).",
        },
        "id_column": {
            **_COLUMN,
            "title": "Id column",
            "description": "A unique column (usually the primary key): orders rows that share "
            "a watermark value and dedupes them.",
        },
        "columns": {
            "type": "array",
            "title": "Columns",
            "description": "Columns to read; empty reads all of them.",
            "items": _COLUMN,
            "uniqueItems": True,
            "maxItems": 200,
            "default": [],
        },
        "interval_seconds": {
            "type": "number",
            "title": "Interval (seconds)",
            "description": "How often to poll, e.g. 60 for every minute.",
            "default": 60,
            "minimum": 1,
            "maximum": 86400,
        },
        "page_size": {
            "type": "integer",
            "title": "Page size",
            "description": "Rows read per page.",
            "minimum": 1,
            "maximum": 5000,
            "default": 500,
        },
        "max_pages_per_poll": {
            "type": "integer",
            "title": "Pages per poll",
            "description": "Most pages read in one poll; the rest wait for the next one.",
            "minimum": 1,
            "maximum": 1000,
            "default": 10,
        },
        "seed_on_first_poll": {
            "type": "boolean",
            "title": "Seed on first poll",
            "description": "The first poll moves the watermark past every existing row "
            "without starting runs: only rows written later start the flow.",
            "default": False,
        },
    },
    "required": ["table", "watermark_column", "id_column"],
    "additionalProperties": False,
}

SPEC = ConnectorSpec(
    key="poll_sql",
    name="Poll a SQL table",
    kind="trigger",
    version=1,
    description="Read rows of a PostgreSQL, MySQL/MariaDB or SQLite table whose watermark "
    "column moved (updated_at, a sequence); each new or changed row starts one run.",
    connection_schema=sql_destination.CONNECTION_SCHEMA,
    secret_fields=("password",),
    step_schema=STEP_SCHEMA,
    requires_connection=True,
)


def to_json(value: Any) -> Any:
    """A column value as JSON: times as ISO 8601, decimals as numbers, UUIDs as text."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return value


def _from_json(column: Any, value: Any) -> Any:
    """A saved position value back in the column's Python type (for a bound parameter)."""
    if not isinstance(value, str):
        return value
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return value
    try:
        if python_type is dt.datetime:
            return dt.datetime.fromisoformat(value)
        if python_type is dt.date:
            return dt.date.fromisoformat(value)
        if python_type is Decimal:
            return Decimal(value)
    except ValueError:
        return value
    return value


class SqlPollTrigger(Poller):
    """Reads one page of rows per ``poll`` call; see the module docstring for the rules."""

    spec = SPEC

    def poll(self, ctx: ConnectorContext, state: Any) -> PollPage:
        """Rows after position ``state`` ({"watermark", "id"}; None: from the start)."""
        from sqlalchemy import String, and_, or_, select, type_coerce
        from sqlalchemy.exc import SQLAlchemyError

        step = sql_destination._checked(STEP_SCHEMA, ctx.step_config, "trigger config")
        schema, _, name = str(step["table"]).rpartition(".")
        page_size = int(step.get("page_size", 500))
        db = sql_destination._open(ctx)
        failure: ConnectorError | None = None
        rows: list[dict[str, Any]] = []
        try:
            with db.engine.connect() as conn:
                table = db.table(conn, schema or None, name)
                wm = _column(table, step["watermark_column"])
                key = _column(table, step["id_column"])
                wanted = [_column(table, c) for c in step.get("columns") or []]
                if wanted and key not in wanted:
                    wanted.append(key)
                if wanted and wm not in wanted:
                    wanted.append(wm)
                # SQLite keeps times as text in whatever format wrote them: compare and
                # save the stored text, never a re-formatted value.
                as_text = db.target.dialect == "sqlite" and _temporal(wm)
                mark = type_coerce(wm, String()) if as_text else wm
                columns = wanted or list(table.columns)
                query = select(*columns, mark.label(_MARK)).where(wm.is_not(None))
                if isinstance(state, dict) and "watermark" in state:
                    last_wm = state["watermark"] if as_text else _from_json(wm, state["watermark"])
                    last_id = _from_json(key, state.get("id"))
                    query = query.where(or_(mark > last_wm, and_(mark == last_wm, key > last_id)))
                query = query.order_by(mark, key).limit(page_size)
                rows = [dict(row._mapping) for row in conn.execute(query)]
        except ConnectorError as exc:
            failure = exc
        except SQLAlchemyError as exc:
            failure = classify(exc, Redactor(ctx.secrets.values()), action="reading rows")
        if failure is not None:
            db.forget(schema or None, name)
            raise failure
        wm_name, id_name = wm.name, key.name
        items = []
        for row in rows:
            marked = to_json(row.pop(_MARK))
            message = {column: to_json(value) for column, value in row.items()}
            items.append(PolledItem(f"{message[id_name]}@{message[wm_name]}", message))
        if not items:
            return PollPage([], state=state, more=False)
        position = {"watermark": marked, "id": items[-1].message[id_name]}
        return PollPage(items, state=position, more=len(items) == page_size)

    def check(self, ctx: ConnectorContext) -> CheckResult:
        """Connect (and, with a trigger config, read the newest watermark)."""
        result = sql_destination.SqlDestination().check(ctx)
        if not result.ok or not ctx.step_config.get("table"):
            return result
        started = time.monotonic()
        try:
            latest = self._latest(ctx)
        except ConnectorError as exc:
            return CheckResult(ok=False, message=exc.message)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        return CheckResult(
            ok=True, message=f"{result.message}; newest watermark {latest} ({elapsed_ms} ms)"
        )

    def _latest(self, ctx: ConnectorContext) -> Any:
        from sqlalchemy import func, select
        from sqlalchemy.exc import SQLAlchemyError

        step = sql_destination._checked(STEP_SCHEMA, ctx.step_config, "trigger config")
        schema, _, name = str(step["table"]).rpartition(".")
        db = sql_destination._open(ctx)
        error: ConnectorError | None = None
        try:
            with db.engine.connect() as conn:
                table = db.table(conn, schema or None, name)
                wm = _column(table, step["watermark_column"])
                return to_json(conn.execute(select(func.max(wm))).scalar())
        except SQLAlchemyError as exc:
            error = classify(exc, Redactor(ctx.secrets.values()), action="reading rows")
        raise error


def _temporal(column: Any) -> bool:
    try:
        return column.type.python_type in (dt.datetime, dt.date, dt.time)
    except NotImplementedError:
        return False


def _column(table: Any, name: str) -> Any:
    try:
        return table.columns[name]
    except KeyError:
        raise ConnectorError(f"table {table.name!r} has no column {name!r}") from None


CONNECTOR = SqlPollTrigger
