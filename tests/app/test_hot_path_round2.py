"""Issue #5, round 2 of the hot path: the per-batch connection row, the C-speed JSON depth
check, and the iterative search-key walk (bench/README.md)."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest
from sqlalchemy import delete, event, update

from app import runtime, stores
from app.extensions import db
from app.models import Connection
from app.services import search_keys
from app.services.intake import BadRequest, json_depth, parse_json_body
from app.stores import SqlConnectionResolver, SqlRunStore, batch_limits
from tests.app.test_execution import post_order
from tests.app.test_walking_skeleton import ORDER, live_flow


def _connection(app, **limits) -> int:
    row = Connection(
        name=f"erp-{time.monotonic_ns()}",
        connector_key="http",
        config={"base_url": "http://127.0.0.1:9"},
        secrets_encrypted=runtime.secret_box(app).encrypt({"token": "t-1"}),
        **limits,
    )
    db.session.add(row)
    db.session.commit()
    return row.id


class _Selects:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "connections" in statement:
            self.count += 1


@pytest.fixture
def selects():
    counter = _Selects()
    event.listen(db.engine, "before_cursor_execute", counter)
    yield counter
    event.remove(db.engine, "before_cursor_execute", counter)


class _Batches:
    """Real claims: what starts a batch in a worker."""

    def __init__(self, client, make_user, sink) -> None:
        self.client = client
        self.ctx = live_flow(client, make_user, sink)
        self.number = 7000

    def next(self) -> None:
        self.number += 1
        run_id = post_order(self.client, self.ctx, dict(ORDER, order_number=self.number))
        assert SqlRunStore().claim(run_id, lease_seconds=60) is not None


@pytest.fixture
def batches(client, make_user, sink) -> _Batches:
    return _Batches(client, make_user, sink)


def test_a_worker_reads_a_connection_again_only_after_a_claim_saw_it_change(app, batches, selects):
    connection_id = _connection(app, rate_limit_per_second=5.0, max_in_flight=2)
    resolver = SqlConnectionResolver(runtime.secret_box(app), per_batch=True)
    batches.next()
    selects.count = 0

    first = resolver.resolve(connection_id)
    db.session.commit()  # a run's commit expires ORM rows: no second read for the batch
    second = resolver.resolve(connection_id)
    assert first == second and first.secrets == {"token": "t-1"}
    assert selects.count == 1
    # The gate's limits come from the same read, without a SELECT.
    gate_limits = runtime.delivery_gate(app).limits_for(connection_id)
    assert (gate_limits.rate_per_second, gate_limits.max_in_flight) == (5.0, 2)
    assert selects.count == 1
    # The next batches, with no connection changed in between: no SELECT either.
    batches.next()
    batches.next()
    assert resolver.resolve(connection_id) == first
    assert batch_limits(connection_id) == (5.0, 2)
    assert selects.count == 1

    # An edit is seen by the runs of the next batch.
    db.session.execute(
        update(Connection)
        .where(Connection.id == connection_id)
        .values(config={"base_url": "http://127.0.0.1:10"}, max_in_flight=7)
    )
    db.session.commit()
    assert resolver.resolve(connection_id).config["base_url"] == "http://127.0.0.1:9"
    batches.next()
    assert batch_limits(connection_id) is None  # the new batch has not read it yet
    assert resolver.resolve(connection_id).config["base_url"] == "http://127.0.0.1:10"
    assert batch_limits(connection_id) == (5.0, 7)
    # So is a connection deleted (the count changes even if no updated_at moved up).
    other = _connection(app)
    batches.next()
    resolver.resolve(other)
    db.session.execute(delete(Connection).where(Connection.id == other))
    db.session.commit()
    batches.next()
    assert batch_limits(other) is None
    assert resolver.resolve(other) is None


def test_a_batch_reuses_a_row_for_a_bounded_time(app, batches, monkeypatch):
    connection_id = _connection(app)
    resolver = SqlConnectionResolver(runtime.secret_box(app), per_batch=True)
    batches.next()
    resolver.resolve(connection_id)
    db.session.execute(
        update(Connection)
        .where(Connection.id == connection_id)
        .values(config={"base_url": "http://127.0.0.1:11"})
    )
    db.session.commit()
    monkeypatch.setattr(stores, "CONNECTION_REUSE_SECONDS", 0.0)  # a long batch
    assert resolver.resolve(connection_id).config["base_url"] == "http://127.0.0.1:11"


def test_outside_workers_every_resolve_reads_the_row(app, selects):
    connection_id = _connection(app, max_in_flight=3)
    resolver = SqlConnectionResolver(runtime.secret_box(app))  # previews, test runs
    selects.count = 0
    resolver.resolve(connection_id)
    db.session.commit()
    resolver.resolve(connection_id)
    assert selects.count == 2
    assert batch_limits(connection_id) is None


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b"1", 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}], "c": {}}', 4),
        (b'["[[[[", "]]]{", "\\"[["]', 1),  # brackets inside strings, escaped quotes
        (b"[[[]", 3),  # unpaired brackets count (the parser refuses the body anyway)
    ],
)
def test_json_depth(body: bytes, depth: int) -> None:
    assert json_depth(body) == depth


def test_json_depth_agrees_with_the_parsed_documents_depth() -> None:
    """Strings full of brackets, quotes and backslashes, compact, indented and non-ASCII."""

    def depth(value: Any) -> int:
        children = value.values() if isinstance(value, dict) else value
        if not isinstance(value, (dict, list)):
            return 0
        return 1 + max((depth(child) for child in children), default=0)

    rng = random.Random(5)
    strings = ['a"[{b', "x\\y]", '\\"', "]}", "é[", '\\u005b"', ""]

    def document(level: int) -> Any:
        roll = rng.random()
        if level > 6 or roll < 0.3:
            return rng.choice([*strings, 1, None, 2.5, True])
        if roll < 0.65:
            return [document(level + 1) for _ in range(rng.randint(0, 3))]
        keys = [rng.choice(strings) + str(i) for i in range(rng.randint(0, 3))]
        return {key: document(level + 1) for key in keys}

    for _ in range(2000):
        value = document(0)
        for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=1)):
            assert json_depth(text.encode()) == depth(value), text


def test_json_depth_stops_past_its_limit_and_stays_linear_for_hostile_bodies() -> None:
    assert json_depth(b"[" * 10 + b"]" * 10, 3) == 4
    hostile = b"[" * 500_000 + b"]" * 500_000
    started = time.process_time()
    assert json_depth(hostile, 64) == 500_000  # walked once, not 64 passes
    assert time.process_time() - started < 2.0


def test_a_body_nested_past_the_limit_is_a_400(app) -> None:
    with pytest.raises(BadRequest, match="more than 3 levels"):
        parse_json_body(b'{"a": [[{"b": 1}]]}', 3)
    assert parse_json_body(b'{"a": [[1]]}', 3) == {"a": [[1]]}


def test_search_keys_keep_document_order_under_the_cap() -> None:
    payload = {
        "sku": "first",
        "nested": {"lines": [{"sku": f"n{i}"} for i in range(60)]},
        "email": "Last@Example.com",
    }
    keys = search_keys.extract(payload, "BK-1")
    assert keys[:3] == ["BK-1", "first", "n0"]
    assert len(keys) == search_keys.MAX_KEYS_PER_RUN and "last@example.com" not in keys
    assert search_keys.extract({"sku": True, "ean": 7, "x": {"email": " A@B.c "}}) == [
        "7",
        "a@b.c",
    ]
