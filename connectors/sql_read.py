"""Read-only SELECTs on a SQL connection, for reconciliation checks.

A check holds one SELECT written by an owner, with named parameters for the day being
reconciled: ``:day`` (the date), ``:day_start`` and ``:day_end`` (the local day's bounds as
UTC timestamps, ``[start, end)``). On SQLite, which has no date type, they are bound as ISO
text (``2026-11-27``, ``2026-11-26 23:00:00``).

Three layers keep it a read:

- :func:`statement_problem` accepts one SELECT (or WITH … SELECT) and nothing else: no second
  statement, no data-changing or session-changing keyword, no ``INTO``. It scans strings,
  quoted names and comments the way the strictest of the three dialects would, and refuses
  what it cannot read for sure (backslashes, MySQL's executable ``/*! */`` comments).
- the database runs it in a read-only transaction with a statement timeout (the
  connection's ``timeout_seconds``), see :func:`connectors.sqlutil.read_only_rows`;
- at most ``max_rows`` rows are read; more is an error (a truncated id list would report
  ids as missing that are not).

The connection is a ``sql`` or ``poll_sql`` connection (same settings, egress-checked,
secret ``password``). Error messages carry the driver's text with the secrets redacted.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from connectors import sql as sql_destination
from connectors.base import ConnectorContext, ConnectorError
from connectors.poll_sql import to_json
from connectors.redaction import Redactor
from connectors.sqlutil import read_only_rows

MAX_ROWS = 10_000
MAX_SQL_CHARS = 20_000
PARAMETERS = ("day", "day_start", "day_end")

_START = re.compile(r"(SELECT|WITH)\b", re.IGNORECASE)
# Inside one statement that starts with SELECT or WITH, these are the ways to write (PostgreSQL's
# data-modifying WITH, SELECT INTO, MySQL's INTO OUTFILE), lock rows or reach the server's
# files. Statement-level verbs (SET, BEGIN, PRAGMA…) cannot start a check's SQL anyway.
_REFUSED = frozenset(
    {
        "INSERT", "UPDATE", "DELETE", "MERGE", "UPSERT", "TRUNCATE", "CREATE", "ALTER",
        "DROP", "GRANT", "REVOKE", "INTO", "OUTFILE", "DUMPFILE", "LOAD_FILE", "COPY",
        "CALL", "EXEC", "EXECUTE", "LOCK", "PRAGMA", "ATTACH", "DETACH",
    }
)  # fmt: skip
# The same rule SQLAlchemy's text() uses to find bind parameters.
_PARAM = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


def _code_only(sql: str) -> str:
    """``sql`` with string literals, quoted names and comments blanked out.

    Raises ValueError for what could be read two ways by the databases: an unterminated
    literal or comment, a backslash (an escape in MySQL, a plain character elsewhere),
    nested or executable block comments."""
    if "\\" in sql:
        raise ValueError("backslashes are not allowed in a check's SQL")
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            end = i + 1
            while True:
                end = sql.find(ch, end)
                if end < 0:
                    raise ValueError(f"unterminated {ch} quote")
                if end + 1 < n and sql[end + 1] == ch:  # doubled quote: an escaped one
                    end += 2
                    continue
                break
            out.append(" ")
            i = end + 1
        elif sql.startswith("--", i) and (i + 2 == n or sql[i + 2].isspace()):
            # MySQL reads "--" as a comment only before a space; "--1" is minus minus 1.
            end = sql.find("\n", i)
            i = n if end < 0 else end
            out.append(" ")
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                raise ValueError("unterminated /* comment")
            body = sql[i + 2 : end]
            if body.startswith(("!", "+")) or "/*" in body:
                raise ValueError("executable, hint or nested /* */ comments are not allowed")
            out.append(" ")
            i = end + 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def statement_problem(sql: str) -> str | None:
    """Why ``sql`` is not one read-only SELECT, or None when it is."""
    if not sql.strip():
        return "the SQL is empty"
    if len(sql) > MAX_SQL_CHARS:
        return f"the SQL is longer than {MAX_SQL_CHARS} characters"
    try:
        code = _code_only(sql)
    except ValueError as exc:
        return str(exc)
    body = code.strip()
    if body.endswith(";"):
        body = body[:-1].rstrip()
    if ";" in body:
        return "only a single statement is allowed (found ';' followed by more SQL)"
    if not _START.match(body.lstrip("( \t\r\n")):
        return "only a SELECT statement is allowed (it must start with SELECT or WITH)"
    words = {w.upper() for w in _WORD.findall(body)}
    refused = sorted(words & _REFUSED)
    if refused:
        return f"only a read-only SELECT is allowed: {', '.join(refused)} is not"
    unknown = sorted(parameters(sql) - set(PARAMETERS))
    if unknown:
        listed = ", ".join(f":{p}" for p in unknown)
        known = ", ".join(f":{p}" for p in PARAMETERS)
        return f"unknown parameter(s) {listed}; a check's SQL may use {known}"
    return None


def parameters(sql: str) -> set[str]:
    """The named parameters (``:day``…) in ``sql``, as SQLAlchemy will bind them."""
    return set(_PARAM.findall(sql))


def _bound(sql: str, dialect: str, day: date, start: datetime, end: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {"day": day, "day_start": start, "day_end": end}
    if dialect == "sqlite":  # no date type: ISO text, as SQLite's date functions write it
        values = {
            "day": day.isoformat(),
            "day_start": start.isoformat(sep=" "),
            "day_end": end.isoformat(sep=" "),
        }
    return {name: values[name] for name in parameters(sql) if name in values}


def _statement(ctx: ConnectorContext) -> str:
    sql = str(ctx.step_config.get("sql") or "")
    problem = statement_problem(sql)
    if problem is not None:  # re-checked at run time: the stored text may predate a rule
        raise ConnectorError(f"refused SQL: {problem}")
    return sql.strip().rstrip(";").rstrip()


def read_rows(
    ctx: ConnectorContext,
    day: date,
    start: datetime,
    end: datetime,
    *,
    max_rows: int = MAX_ROWS,
) -> list[dict[str, Any]]:
    """Run the check's SELECT (``ctx.step_config["sql"]``) for ``day``; rows as JSON objects
    (times as ISO 8601 text, decimals as numbers)."""
    sql = _statement(ctx)
    db = sql_destination._open(ctx)
    rows = read_only_rows(
        db,
        sql,
        _bound(sql, db.target.dialect, day, start, end),
        max_rows=max_rows,
        redact=Redactor(ctx.secrets.values()),
    )
    return [{column: to_json(value) for column, value in row.items()} for row in rows]


def probe(ctx: ConnectorContext, day: date, start: datetime, end: datetime) -> None:
    """Have the database plan the SELECT without running it (EXPLAIN): syntax errors,
    unknown tables and columns and missing rights show up as a ConnectorError."""
    sql = _statement(ctx)
    db = sql_destination._open(ctx)
    read_only_rows(
        db,
        sql,
        _bound(sql, db.target.dialect, day, start, end),
        max_rows=MAX_ROWS,
        redact=Redactor(ctx.secrets.values()),
        explain=True,
    )
