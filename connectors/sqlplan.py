"""Turning a message into checked INSERT / upsert statements for a reflected table.

Only names found in the reflected table reach a statement (SQLAlchemy quotes them); values
are always bound parameters. Every row is checked before the first statement is returned,
so a bad row fails the delivery before anything is written.

With ``newer_column`` an upsert updates a stored row only when the incoming value of that
column is greater than the stored one, or the stored one is NULL: an event that arrives
late (v1 after v2, ``created`` after ``updated``) never overwrites newer data, and an equal
value (a redelivery) changes nothing. ``tally`` counts what each statement did.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connectors.base import ConnectorError

if TYPE_CHECKING:
    from sqlalchemy import Column, Table
    from sqlalchemy.engine import CursorResult
    from sqlalchemy.sql.dml import Insert

MAX_ROWS = 5_000


@dataclass
class Tally:
    """What the statements of one message did to its rows."""

    written: int = 0  # inserted or updated
    skipped: int = 0  # left alone: not newer than the stored row
    unsure: int = 0  # inserted, or skipped: the server does not say which (MySQL, see tally)

    def add(self, other: Tally) -> None:
        self.written += other.written
        self.skipped += other.skipped
        self.unsure += other.unsure

    def summary(self, table: str, newer: str) -> str:
        """The delivery's answer. Skipped rows are a success, but said apart from the rest."""
        if self.unsure:
            return (
                f"upsert of {self.written + self.unsure} row(s) into {table}: {self.written} "
                f"updated, {self.unsure} inserted or skipped (not newer than the stored "
                f"{newer}); MySQL/MariaDB reports both the same way"
            )
        summary = f"upserted {self.written} row(s) into {table}"
        if self.skipped:
            summary += f"; skipped {self.skipped} row(s): not newer than the stored {newer}"
        return summary


def rows_of(message: Any) -> list[Mapping[str, Any]]:
    """The rows of a message: an object is one row, an array of objects several."""
    rows = message if isinstance(message, list) else [message]
    if not rows:
        raise ConnectorError("the message is an empty array: no row to write")
    if len(rows) > MAX_ROWS:
        raise ConnectorError(f"the message has {len(rows)} rows; at most {MAX_ROWS} per message")
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ConnectorError(
                f"row {index}: expected an object (one row), got {type(row).__name__}"
            )
    return rows


def plan(
    table: Table, step: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], dialect: str
) -> Iterator[tuple[Insert, list[dict[str, Any]]]]:
    """Every statement with its parameter rows; all rows are checked before the first one."""
    keys: list[str] = list(step.get("key_columns") or [])
    upsert = step.get("mode", "insert") == "upsert"
    newer: str | None = step.get("newer_column") if upsert else None
    mapping: Mapping[str, str] = step.get("columns") or {}
    for column in [*mapping.values(), *(keys if upsert else []), *([newer] if newer else [])]:
        _column(table, column)
    if upsert:
        _require_unique_key(table, keys)
    ignore = step.get("unknown_fields", "error") == "ignore"
    values = [_row_values(table, row, index, mapping, ignore) for index, row in enumerate(rows)]
    for index, row_values in enumerate(values):
        missing = [k for k in keys if row_values.get(k) is None] if upsert else []
        if missing:
            raise ConnectorError(f"row {index}: key column {missing[0]!r} has no value")
        # An absent column would take its DEFAULT (often now()) and always look newest.
        if newer and newer not in row_values:
            raise ConnectorError(
                f"row {index}: no value for {newer!r}, the column that decides which row is "
                "newer (null is accepted: it never replaces a stored value)"
            )
    for batch in _batches(values, keys if upsert else []):
        statement = _statement(table, dialect, keys if upsert else None, list(batch[0]), newer)
        yield statement, batch


def tally(dialect: str, result: CursorResult[Any], sent: int) -> Tally:
    """What a ``newer_column`` upsert of ``sent`` rows (distinct keys) did, from the result.

    PostgreSQL: the statement returns only the rows it inserted or updated. SQLite: rowcount
    counts them (0 for a skipped row, summed over executemany). MySQL/MariaDB: SQLAlchemy
    always connects with CLIENT_FOUND_ROWS, so a row counts 1 when inserted, 2 when updated
    and 1 when skipped (left unchanged): updates are exact, inserts and skips are not told
    apart, and are reported as such rather than guessed.
    """
    if dialect == "postgresql":
        written = len(result.all())
        return Tally(written=written, skipped=sent - written)
    if dialect == "sqlite":
        written = result.rowcount
        return Tally(written=written, skipped=sent - written)
    updated = result.rowcount - sent
    if not 0 <= updated <= sent:  # not the counting described above: claim nothing
        return Tally(unsure=sent)
    return Tally(written=updated, unsure=sent - updated)


def _row_values(
    table: Table, row: Mapping[str, Any], index: int, mapping: Mapping[str, str], ignore: bool
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field, value in row.items():
        name = mapping.get(field) if mapping else field
        if name is None or name not in table.c:
            if ignore:
                continue
            if name is None:
                raise ConnectorError(f"row {index}: field {_shown(field)} is not mapped")
            raise ConnectorError(
                f"row {index}: unknown column {_shown(name)} in table {table.fullname!r}"
            )
        values[name] = _coerce(table.c[name], value, index)
    if not values:
        raise ConnectorError(f"row {index}: no field matches a column of {table.fullname!r}")
    return values


def _column(table: Table, name: str) -> Column[Any]:
    if name not in table.c:
        raise ConnectorError(f"unknown column {_shown(name)} in table {table.fullname!r}")
    return table.c[name]


def _require_unique_key(table: Table, keys: Sequence[str]) -> None:
    """ON CONFLICT needs a matching unique index, and MySQL's upsert fires on any unique key:
    refuse key columns that do not identify a row rather than update the wrong one."""
    from sqlalchemy import UniqueConstraint

    wanted = frozenset(keys)
    unique = [frozenset(c.name for c in table.primary_key.columns)]
    unique += [
        frozenset(c.name for c in con.columns)
        for con in table.constraints
        if isinstance(con, UniqueConstraint)
    ]
    unique += [
        frozenset(c.name for c in index.columns)
        for index in table.indexes
        if index.unique and index.dialect_kwargs.get("postgresql_where") is None
    ]
    if wanted not in unique:
        raise ConnectorError(
            f"key columns {', '.join(keys)} are not the primary key or a unique key of "
            f"table {table.fullname!r}; upsert needs one"
        )


def _batches(values: list[dict[str, Any]], keys: Sequence[str]) -> Iterator[list[dict[str, Any]]]:
    """Consecutive rows with the same columns, split where a key repeats (a single upsert
    statement may not touch one row twice), so the rows apply in message order."""
    batch: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for row in values:
        key = tuple(row[k] for k in keys)
        if batch and (row.keys() != batch[0].keys() or (keys and key in seen)):
            yield batch
            batch, seen = [], set()
        batch.append(row)
        seen.add(key)
    if batch:
        yield batch


def _statement(
    table: Table,
    dialect: str,
    keys: Sequence[str] | None,
    columns: list[str],
    newer: str | None = None,
) -> Any:
    from sqlalchemy import insert

    if keys is None:
        return insert(table)
    updates = [c for c in columns if c not in keys]
    if dialect == "mysql":
        return _mysql_upsert(table, keys, updates, newer)
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    stmt = dialect_insert(table)
    if not updates:
        return stmt.on_conflict_do_nothing(index_elements=list(keys))
    where = _is_newer(stmt.excluded[newer], table.c[newer]) if newer else None
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in updates}, where=where
    )
    if newer and dialect == "postgresql":
        # psycopg gives no rowcount for executemany: the returned rows are the written ones.
        stmt = stmt.returning(*(table.c[k] for k in keys))
    return stmt


def _mysql_upsert(table: Table, keys: Sequence[str], updates: list[str], newer: str | None) -> Any:
    from sqlalchemy import func
    from sqlalchemy.dialects.mysql import insert as mysql_insert

    stmt = mysql_insert(table)
    if newer is None:
        # With nothing but the key, "update" the key to itself: a no-op that skips the row.
        return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in updates or keys[:1]})
    # MySQL has no WHERE here, so each assignment carries the test. It assigns left to right
    # and later tests see earlier assignments: the newer column goes last, so every test
    # compares against the stored value.
    wins = _is_newer(stmt.inserted[newer], table.c[newer])
    ordered = [c for c in updates if c != newer] + [newer]
    return stmt.on_duplicate_key_update(
        [(c, func.IF(wins, stmt.inserted[c], table.c[c])) for c in ordered]
    )


def _is_newer(incoming: Any, stored: Any) -> Any:
    """Incoming greater than stored, or nothing stored. A NULL incoming value makes the
    comparison NULL: it never replaces a stored value. Equal values do not win either."""
    from sqlalchemy import or_

    return or_(incoming > stored, stored.is_(None))


def _coerce(column: Column[Any], value: Any, index: int) -> Any:
    """JSON values as the column needs them: ISO strings for temporal columns, and objects
    or arrays as JSON text unless the column has a JSON type."""
    from sqlalchemy import JSON, Date, DateTime, String, Time

    if value is None:
        return None
    kind = column.type
    if isinstance(value, dict | list):
        if isinstance(kind, JSON):
            return value
        if isinstance(kind, String):
            return json.dumps(value, ensure_ascii=False)
        raise ConnectorError(
            f"row {index}: column {column.name!r} ({kind}) cannot hold an object or array"
        )
    if isinstance(value, str) and isinstance(kind, Date | DateTime | Time):
        parse: Any = (
            dt.datetime.fromisoformat
            if isinstance(kind, DateTime)
            else dt.time.fromisoformat
            if isinstance(kind, Time)
            else dt.date.fromisoformat
        )
        try:
            return parse(value)
        except ValueError:
            raise ConnectorError(
                f"row {index}: column {column.name!r} needs an ISO 8601 value, got {_shown(value)}"
            ) from None
    return value


def _shown(name: str) -> str:
    return repr(name if len(name) <= 80 else name[:77] + "...")
