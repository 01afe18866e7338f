"""SQL destination ``newer_column``: an event that arrives late never overwrites newer state.

Reliability case 28 (``order.updated`` v2 before v1, ``created`` after ``updated``) against
real databases, reusing test_sql_destination's backends (PostgreSQL and MariaDB on 127.0.0.1,
a SQLite file; a server that is not running is skipped locally and fails under CI=true) and
its table: sku (primary key), name, qty, updated_at, doc, note.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connectors.base import ConnectorError
from connectors.config import config_problems
from connectors.registry import load_registry
from connectors.sql import SPEC, semantic_problems
from flows.validation import validate
from tests.connectors import test_sql_destination as base
from tests.connectors.test_sql_destination import Backend, rows, send

# The same backends and table as test_sql_destination (pytest finds fixtures by module name).
backend = base.backend
shared_table = base.shared_table
table = base.table
_close_engines = base._close_engines

FIXTURES = Path(__file__).parents[1] / "fixtures" / "flows" / "valid"
V1 = {"sku": "A-1", "name": "v1", "qty": 1, "updated_at": "2024-05-06T10:00:00"}
V2 = {"sku": "A-1", "name": "v2", "qty": 2, "updated_at": "2024-05-06T10:05:00"}


def newer_only(table: str, **extra: Any) -> dict[str, Any]:
    return {
        "table": table,
        "mode": "upsert",
        "key_columns": ["sku"],
        "newer_column": "updated_at",
        **extra,
    }


def answer_for(backend: Backend, table: str, written: int, skipped: int) -> str:
    """The delivery answer, as each dialect can honestly give it (see sqlplan.tally)."""
    if backend.name == "mysql":
        # CLIENT_FOUND_ROWS: an insert and a skip both count 1 affected row, an update 2.
        return (
            f"upsert of {written + skipped} row(s) into {table}: 0 updated, "
            f"{written + skipped} inserted or skipped (not newer than the stored updated_at); "
            "MySQL/MariaDB reports both the same way"
        )
    answer = f"upserted {written} row(s) into {table}"
    if skipped:
        answer += f"; skipped {skipped} row(s): not newer than the stored updated_at"
    return answer


def stored(backend: Backend, table: str) -> list[tuple[Any, ...]]:
    return [
        (sku, name, qty, str(stamp)[:19] if stamp is not None else None)
        for sku, name, qty, stamp in rows(backend, table, "sku, name, qty, updated_at")
    ]


# --- out-of-order events ---


def test_a_late_older_event_never_overwrites_the_newer_row(backend: Backend, table: str) -> None:
    ctx = backend.ctx(newer_only(table))
    send(ctx, V2)
    result = send(ctx, V1)  # v1 was delayed: it arrives after v2
    assert stored(backend, table) == [("A-1", "v2", 2, "2024-05-06 10:05:00")]
    assert result.status_code is None  # a success: the delivery is acknowledged
    assert result.response_excerpt == answer_for(backend, table, 0, 1)
    if backend.name != "mysql":
        assert result.response_excerpt == (
            f"upserted 0 row(s) into {table}; skipped 1 row(s): not newer than the stored "
            "updated_at"
        )


def test_a_newer_event_replaces_every_column(backend: Backend, table: str) -> None:
    # On MariaDB this also proves the version column is assigned last: assigned first, the
    # IF of every later column would compare against v2's value and keep v1's name and qty.
    ctx = backend.ctx(newer_only(table))
    first = send(ctx, V1)
    result = send(ctx, V2)
    assert stored(backend, table) == [("A-1", "v2", 2, "2024-05-06 10:05:00")]
    assert result.response_excerpt == f"upserted 1 row(s) into {table}"  # MySQL: 2 = updated
    # An insert: exact on PostgreSQL and SQLite; on MySQL it counts 1, as a skip would.
    assert first.response_excerpt == (
        answer_for(backend, table, 1, 0)
        if backend.name == "mysql"
        else f"upserted 1 row(s) into {table}"
    )


def test_the_same_version_twice_changes_nothing_and_is_reported_skipped(
    backend: Backend, table: str
) -> None:
    ctx = backend.ctx(newer_only(table))
    send(ctx, V2)
    assert send(ctx, V2).response_excerpt == answer_for(backend, table, 0, 1)  # a redelivery
    # Equal is not newer, even when other fields differ: the first one to land stays.
    result = send(ctx, {**V2, "name": "same time, other name", "qty": 99})
    assert result.response_excerpt == answer_for(backend, table, 0, 1)
    assert stored(backend, table) == [("A-1", "v2", 2, "2024-05-06 10:05:00")]


def test_a_stored_null_is_replaced_by_any_incoming_value(backend: Backend, table: str) -> None:
    backend.run(f"INSERT INTO {table} (sku, name, qty) VALUES ('A-1', 'legacy', 0)")
    result = send(backend.ctx(newer_only(table)), V1)
    assert stored(backend, table) == [("A-1", "v1", 1, "2024-05-06 10:00:00")]
    assert result.response_excerpt == f"upserted 1 row(s) into {table}"  # MySQL: 2 = updated


def test_an_incoming_null_never_replaces_a_stored_value(backend: Backend, table: str) -> None:
    ctx = backend.ctx(newer_only(table))
    send(ctx, V1)
    result = send(ctx, {**V2, "updated_at": None})
    assert stored(backend, table) == [("A-1", "v1", 1, "2024-05-06 10:00:00")]
    assert result.response_excerpt == answer_for(backend, table, 0, 1)


def test_out_of_order_rows_in_one_message_and_the_counts(backend: Backend, table: str) -> None:
    ctx = backend.ctx(newer_only(table))
    send(ctx, [V1, {**V1, "sku": "B-2", "updated_at": "2024-05-06T12:00:00"}])
    message = [
        V2,  # newer, updated
        {**V1, "name": "late"},  # A-1 again, older than what the row above just wrote
        {**V1, "sku": "B-2", "name": "late"},  # B-2: older than stored, skipped
        {**V1, "sku": "C-3", "name": "new"},  # C-3: inserted
    ]
    result = send(ctx, message)
    assert stored(backend, table) == [
        ("A-1", "v2", 2, "2024-05-06 10:05:00"),
        ("B-2", "v1", 1, "2024-05-06 12:00:00"),
        ("C-3", "new", 1, "2024-05-06 10:00:00"),
    ]
    if backend.name == "mysql":
        # 1 updated; the late A-1, the skipped B-2 and the new C-3 cannot be told apart.
        assert result.response_excerpt == (
            f"upsert of 4 row(s) into {table}: 1 updated, 3 inserted or skipped (not newer "
            "than the stored updated_at); MySQL/MariaDB reports both the same way"
        )
    else:
        assert result.response_excerpt == (
            f"upserted 2 row(s) into {table}; skipped 2 row(s): not newer than the stored "
            "updated_at"
        )


def test_an_integer_version_compares_as_a_number(backend: Backend, table: str) -> None:
    ctx = backend.ctx(newer_only(table, newer_column="qty"))
    send(ctx, {"sku": "A-1", "name": "version 10", "qty": 10})
    send(ctx, {"sku": "A-1", "name": "version 9", "qty": 9})  # "9" > "10" as text
    assert rows(backend, table) == [("A-1", "version 10", 10)]


def test_a_row_without_the_newer_column_is_refused(backend: Backend, table: str) -> None:
    # Left out, the column would take its default, which may well be "now": always newest.
    ctx = backend.ctx(newer_only(table))
    with pytest.raises(ConnectorError, match="row 1: no value for 'updated_at'") as info:
        send(ctx, [V1, {"sku": "B-2", "name": "no stamp"}])
    assert not info.value.retryable
    assert rows(backend, table) == []


def test_without_newer_column_the_last_write_wins(backend: Backend, table: str) -> None:
    ctx = backend.ctx({"table": table, "mode": "upsert", "key_columns": ["sku"]})
    send(ctx, V2)
    result = send(ctx, V1)
    assert stored(backend, table) == [("A-1", "v1", 1, "2024-05-06 10:00:00")]
    assert result.response_excerpt == f"upserted 1 row(s) into {table}"


@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
def test_mysql_assigns_left_to_right_so_the_version_goes_last(backend: Backend, table: str) -> None:
    """Why sqlplan orders the ON DUPLICATE KEY UPDATE list: in the opposite order, run by
    hand on the real server, a newer event loses every column but the version."""
    backend.run(
        f"INSERT INTO {table} (sku, name, updated_at) VALUES ('A-1', 'v1', '2024-05-06 10:00:00')"
    )
    wins = "VALUES(updated_at) > updated_at OR updated_at IS NULL"
    backend.run(
        f"INSERT INTO {table} (sku, name, updated_at) VALUES ('A-1', 'v2', '2024-05-06 10:05:00')"
        f" ON DUPLICATE KEY UPDATE updated_at = IF({wins}, VALUES(updated_at), updated_at),"
        f" name = IF({wins}, VALUES(name), name)"
    )
    assert stored(backend, table) == [("A-1", "v1", None, "2024-05-06 10:05:00")]  # name lost
    backend.run(f"DELETE FROM {table}")
    # The connector puts it last whatever the order of the message's fields.
    ctx = backend.ctx(newer_only(table))
    send(ctx, {"updated_at": V1["updated_at"], "sku": "A-1", "name": "v1"})
    send(ctx, {"updated_at": V2["updated_at"], "sku": "A-1", "name": "v2"})
    assert stored(backend, table) == [("A-1", "v2", None, "2024-05-06 10:05:00")]


# --- configuration ---


def test_newer_column_only_applies_to_upserts() -> None:
    schema = SPEC.step_schema
    message = "only applies with mode upsert (an insert never overwrites a row)"
    insert = {"table": "orders", "mode": "insert", "newer_column": "updated_at"}
    assert config_problems(schema, insert) == [("/newer_column", message)]
    default_mode = {"table": "orders", "newer_column": "updated_at"}  # mode defaults to insert
    assert config_problems(schema, default_mode) == [("/newer_column", message)]
    assert config_problems(schema, newer_only("orders")) == []
    empty = config_problems(schema, newer_only("orders", newer_column=""))
    assert {path for path, _ in empty} == {"/newer_column"}
    assert config_problems(schema, newer_only("orders", newer_column="a\nb")) == [
        ("/newer_column", "must be a column name (no control characters)")
    ]


def test_newer_column_cannot_be_a_key_column_or_unmapped() -> None:
    assert semantic_problems(newer_only("orders")) == []
    assert semantic_problems(newer_only("orders", newer_column="sku")) == [
        (
            "/newer_column",
            "'sku' is a key column, equal in the stored and the incoming row: choose a column "
            "that changes with each event, such as updated_at or version",
        )
    ]
    mapped = newer_only("orders", columns={"id": "sku", "title": "name"})
    assert semantic_problems(mapped) == [
        (
            "/newer_column",
            "'updated_at' is not a mapped column: map a message field to it in the column mapping",
        )
    ]
    assert semantic_problems({**mapped, "columns": {"id": "sku", "changed": "updated_at"}}) == []


def test_flow_validation_reports_a_bad_newer_column_at_its_field() -> None:
    doc = json.loads((FIXTURES / "web_order_to_sql.json").read_text())
    [index] = [i for i, step in enumerate(doc["steps"]) if step.get("connector") == "sql"]
    config = doc["steps"][index]["config"]
    registry = load_registry()

    def problems(**extra: Any) -> list[tuple[str, str]]:
        doc["steps"][index]["config"] = {**config, **extra}
        return [(p.path, p.code) for p in validate(doc, registry, lambda _id: "sql")]

    field = (f"/steps/{index}/config/newer_column", "invalid_config")
    assert problems(newer_column="updated_at") == []
    assert problems(newer_column="updated_at", mode="insert") == [field]
    assert problems(newer_column=config["key_columns"][0]) == [field]
    assert problems(newer_column="updated_at", columns={"ref": "order_ref"}) == [field]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"mode": "insert"}, "invalid step config: /newer_column only applies with mode upsert"),
        ({"newer_column": "sku"}, "invalid step config: /newer_column 'sku' is a key column"),
        (
            {"columns": {"sku": "sku", "name": "name"}},
            "invalid step config: /newer_column 'updated_at' is not a mapped column",
        ),
        ({"newer_column": "changed_at"}, "unknown column 'changed_at' in table"),
    ],
)
def test_a_bad_newer_column_fails_the_delivery_before_writing(
    extra: dict[str, Any], expected: str, backend: Backend, table: str
) -> None:
    with pytest.raises(ConnectorError, match=expected) as info:
        send(backend.ctx(newer_only(table, **extra)), V1)
    assert not info.value.retryable
    assert rows(backend, table) == []
