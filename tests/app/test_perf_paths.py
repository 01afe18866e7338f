"""The fast paths keep the ledger's guarantees (issue #5, bench/README.md).

* intake caches the live version per slug, yet a retired version never gets a run once its
  successor's approval committed;
* the claim is one UPDATE … RETURNING and stays a compare-and-set between workers, and a
  worker whose lease was taken over writes nothing of its own at finish, while what the
  destination acknowledged is still committed;
* a run's first attempt writes its delivery and steps without looking for earlier ones,
  later attempts (retries, replays) still find them;
* each path issues the SQL it is meant to (counted with SQLAlchemy events).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import event, select, text, update
from sqlalchemy import exc as sa_exc

import app.services.intake as intake_module
import app.stores as stores_module
from app.extensions import db
from app.models import Delivery, Run, RunStep
from app.models._types import utcnow
from app.services.intake import _RECORD_RUN_PG
from app.stores import (
    _INSERT_DELIVERY_PG,
    _OUTCOMES_PG,
    SqlDeliveryLedger,
    SqlRunStore,
    autocommitted,
)
from connectors.base import SendResult
from flows import jobs
from flows.results import DeliveryStatus, RunResult, RunStatus, StepResult, StepStatus
from tests.app.test_execution import make_due, post_order, run_row
from tests.app.test_walking_skeleton import ORDER, definition, live_flow
from tests.support.contracts import complete_contract


def _approve_successor(client, ctx, mapping: str) -> int:
    analyst_h = ctx["headers"]
    connection_id = client.get("/api/v1/connections", headers=analyst_h).get_json()["items"][0][
        "id"
    ]
    doc = definition(connection_id)
    doc["steps"][1]["expression"] = mapping
    flow_id = ctx["flow"]["id"]
    r = client.put(f"/api/v1/flows/{flow_id}/draft", json={"definition": doc}, headers=analyst_h)
    assert r.status_code == 200, r.get_json()
    number = r.get_json()["version"]
    base = f"/api/v1/flows/{flow_id}/versions/{number}"
    r = client.post(f"{base}/submit", json={"contract": complete_contract()}, headers=analyst_h)
    assert r.status_code == 200, r.get_json()
    r = client.post(f"{base}/approve", json={}, headers=ctx["owner_headers"])
    assert r.status_code == 200, r.get_json()
    return number


def test_a_retired_version_never_runs_after_its_successor_is_approved(
    client, make_user, sink, run_worker
):
    ctx = live_flow(client, make_user, sink)
    first = post_order(client, ctx)  # caches version 1 for this slug
    v1 = run_row(first).flow_version_id
    _approve_successor(client, ctx, "{'orderRef': 'V2-' & $string(order_number)}")
    second = post_order(client, ctx)  # the cache still names version 1: it must not be used
    v2 = run_row(second).flow_version_id
    assert v2 != v1
    run_worker()
    assert run_row(first).status == run_row(second).status == "succeeded"
    bodies = {r.json().get("orderRef", "")[:3] for r in sink.requests}
    assert bodies == {"WEB", "V2-"}  # the first run was accepted under v1, the second v2
    # And the cache now holds version 2: a third message goes to v2 as well.
    third = post_order(client, ctx)
    assert run_row(third).flow_version_id == v2


def test_a_removed_flow_stops_answering_even_when_cached(client, make_user, sink, app):
    ctx = live_flow(client, make_user, sink)
    post_order(client, ctx)
    from app.models import FlowVersion

    db.session.execute(update(FlowVersion).values(status="retired"))
    db.session.commit()
    r = client.post(f"/hooks/{ctx['flow']['slug']}", json=ORDER)
    assert r.status_code == 404
    assert len(db.session.execute(select(Run.id)).scalars().all()) == 1


def _claimed_run(client, make_user, sink) -> int:
    ctx = live_flow(client, make_user, sink)
    return post_order(client, ctx)


def test_claim_is_a_compare_and_set_between_two_workers(client, make_user, sink, app):
    run_id = _claimed_run(client, make_user, sink)
    a, b = SqlRunStore(), SqlRunStore()
    claimed = a.claim(run_id, lease_seconds=60)
    assert claimed is not None and claimed.attempts == 1 and claimed.first
    assert claimed.definition["steps"][0]["id"] == "only_paid"
    db.session.remove()
    assert b.claim(run_id, lease_seconds=60) is None  # A holds a live lease
    # A's lease runs out (worker stalled): B takes over with the next attempt number.
    db.session.execute(
        update(Run).where(Run.id == run_id).values(lease_until=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    taken = b.claim(run_id, lease_seconds=60)
    assert taken is not None and taken.attempts == 2 and not taken.first
    # A's late finish is fenced off and writes nothing; B's stands.
    late = RunResult(RunStatus.SUCCEEDED, [StepResult("only_paid", StepStatus.SUCCEEDED)])
    assert a.finish(claimed, late) is False
    db.session.remove()
    assert run_row(run_id).status == "running" and run_row(run_id).attempts == 2
    assert db.session.execute(select(RunStep)).first() is None
    done = RunResult(RunStatus.SUCCEEDED, [StepResult("only_paid", StepStatus.SUCCEEDED)])
    assert b.finish(taken, done) is True
    run = run_row(run_id)
    assert run.status == "succeeded" and [s.attempt for s in run.steps] == [2]


def test_a_fenced_worker_still_commits_what_the_destination_acknowledged(
    client, make_user, sink, app
):
    run_id = _claimed_run(client, make_user, sink)
    store, ledger = SqlRunStore(), SqlDeliveryLedger(lease_seconds=60)
    claimed = store.claim(run_id, lease_seconds=60)
    assert ledger.begin(run_id, "send_oms", "key-1", new=True) == 1
    # While the request is out, the lease is lost to another worker.
    other = db.engine.connect()
    other.execute(update(Run).where(Run.id == run_id).values(attempts=Run.attempts + 1))
    other.commit()
    other.close()
    ledger.acknowledge(run_id, "send_oms", SendResult(201, "ok"))  # pending, not committed
    result = RunResult(RunStatus.SUCCEEDED, [StepResult("send_oms", StepStatus.SUCCEEDED)])
    assert store.finish(claimed, result) is False
    db.session.remove()
    delivery = db.session.execute(select(Delivery)).scalar_one()
    assert delivery.status == DeliveryStatus.ACKNOWLEDGED.value and delivery.attempts == 1
    assert db.session.execute(select(RunStep)).first() is None  # nothing of the run's own


def test_a_retried_run_finds_its_delivery_and_keeps_one_key(
    client, make_user, sink, run_worker, app
):
    from app.services.sweep import sweep
    from tests.support.sink import Answer

    ctx = live_flow(client, make_user, sink)
    sink.scripted = [Answer(status=503, headers={"Retry-After": "0"}), Answer(status=201)]
    run_id = post_order(client, ctx)
    run_worker()
    assert run_row(run_id).status == "retrying"
    make_due(run_id)
    sweep(app)
    run_worker()
    run = run_row(run_id)
    assert run.status == "succeeded" and run.attempts == 2
    assert [d.attempts for d in run.deliveries] == [2]  # the same row, not a second one
    assert len({r.headers["Idempotency-Key"] for r in sink.requests}) == 1
    assert [(s.step_id, s.attempt) for s in run.steps] == [
        ("only_paid", 2),
        ("to_oms_order", 2),
        ("send_oms", 2),
    ]


class _CountingCursor:
    def __init__(self, cursor, on_statement):
        self._cursor, self._on_statement = cursor, on_statement

    def execute(self, statement, params=None):
        self._on_statement(None, None, statement, params, None, False)
        return self._cursor.execute(statement, params)


def _count_driver_sql(monkeypatch, on_statement):
    """Count the statements run at the driver (``app.stores.autocommitted``) too; they
    commit as they execute, so they add no COMMIT."""
    real = stores_module.autocommitted

    @contextlib.contextmanager
    def counted():
        with real() as cursor:
            yield _CountingCursor(cursor, on_statement)

    monkeypatch.setattr(stores_module, "autocommitted", counted)
    monkeypatch.setattr(intake_module, "autocommitted", counted)


def _count_sql(engine, monkeypatch):
    counts: Counter[str] = Counter()

    def on_statement(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().startswith("SELECT count("):  # the backlog count: once a second
            return
        counts[statement.split(None, 1)[0].upper()] += 1

    _count_driver_sql(monkeypatch, on_statement)

    def on_commit(conn):
        counts["COMMIT"] += 1

    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(engine, "commit", on_commit)

    def stop() -> Counter[str]:
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(engine, "commit", on_commit)
        monkeypatch.undo()
        return counts

    return stop


def test_intake_and_worker_issue_the_expected_sql(
    client, make_user, sink, run_worker, app, monkeypatch
):
    """Regression guard for the statement budget measured in bench/README.md."""
    ctx = live_flow(client, make_user, sink)
    post_order(client, ctx)  # warms the live-version cache and the backlog count
    run_worker()
    stop = _count_sql(db.engine, monkeypatch)
    post_order(client, ctx, dict(ORDER, order_number=4242))
    intake = stop()
    # The run, with the live check inside it (INSERT … SELECT … WHERE EXISTS … RETURNING),
    # and its search keys; one commit; no re-read of the run. On PostgreSQL both INSERTs
    # are one statement (WITH new_run AS (INSERT …), new_keys AS (INSERT …) SELECT …),
    # committed as it executes (autocommit: no BEGIN, no COMMIT).
    assert intake["SELECT"] == 0
    if db.engine.dialect.name == "postgresql":
        assert intake["WITH"] == 1 and intake["INSERT"] == 0 and intake["COMMIT"] == 0
    else:
        assert intake["INSERT"] == 2 and intake["COMMIT"] == 1
    for number in range(4243, 4247):
        post_order(client, ctx, dict(ORDER, order_number=number))
    # One flush at the end of the batch, however slow the machine: no mid-batch flush
    # (DrainLimits.flush_after_seconds) may add a statement to the count.
    drain_job = jobs._drain.__self__
    drain_job.limits = dataclasses.replace(drain_job.limits, flush_after_seconds=600)
    # Nor may the connection row's two-second reuse bound expire between the two drains.
    monkeypatch.setattr(stores_module, "CONNECTION_REUSE_SECONDS", 600.0)
    stop = _count_sql(db.engine, monkeypatch)
    run_worker()  # one drain job: the first post woke it, the others found it pending
    worker = stop()
    # One batch of 5: one claim (UPDATE … RETURNING) and its commit; no connection row read
    # (the first drain read it, and the claim saw no connection change since); per run the
    # delivery's ``sending`` INSERT, which also writes the previous delivery's
    # acknowledgement, and its commit; at the end of the batch its
    # pending writes (the last acknowledgement, each run's fenced UPDATE and its steps) and
    # one commit; then the empty claims that end the job (runs that never lost a lease,
    # then one that did): 2 UPDATEs and 2 commits. (The claim is ``WITH picked AS (SELECT …
    # FOR UPDATE SKIP LOCKED) UPDATE …``.) On PostgreSQL a ``sending`` INSERT after the
    # first is ``WITH outcomes AS (UPDATE deliveries …) INSERT …`` and commits as it
    # executes (autocommit, no COMMIT), and the batch's pending writes are one statement
    # (``WITH fin AS (UPDATE runs …), steps AS (INSERT INTO run_steps …), outcomes AS
    # (UPDATE deliveries …) SELECT …``). On SQLite each acknowledgement is an UPDATE in the
    # next delivery's transaction (the last one in the flush's), then per run its UPDATE and
    # steps INSERT.
    assert worker["SELECT"] == 0
    if db.engine.dialect.name == "postgresql":
        assert worker["COMMIT"] == 1 + 1 + 2
        assert worker["WITH"] == 1 + 4 + 1 + 2 and worker["UPDATE"] == 0
        assert worker["INSERT"] == 1
    else:
        assert worker["COMMIT"] == 1 + 5 + 1 + 2
        assert worker["WITH"] == 1 + 2 and worker["UPDATE"] == 4 + 1 + 5
        assert worker["INSERT"] == 5 * 2
    assert len(sink.requests) == 6


def _inserted_columns(sql: str, table: str) -> set[str]:
    head = sql.split(f"INSERT INTO {table} (", 1)[1].split(")", 1)[0]
    return {name.strip() for name in head.split(",")}


def test_the_driver_level_inserts_write_every_column_the_orm_would():
    """The hot INSERTs at the driver (intake's run, a delivery's ``sending`` row) write out
    the defaults the ORM adds: a new column with a default or NOT NULL must be added there."""
    for model, sql in ((Run, _RECORD_RUN_PG), (Delivery, _INSERT_DELIVERY_PG)):
        table = model.__table__
        written = _inserted_columns(sql, table.name)
        needed = {
            c.name
            for c in table.columns
            if not c.primary_key and (c.default is not None or not c.nullable)
        }
        assert needed <= written, f"{table.name}: {sorted(needed - written)} not written"
        assert written <= set(table.columns.keys())


def test_a_run_stored_at_the_driver_reads_back_as_the_message(client, make_user, sink, app):
    """PostgreSQL stores a webhook's own body text as the payload: it reads back equal to the
    parsed message, numbers and unicode included; every default column is set."""
    ctx = live_flow(client, make_user, sink)
    message = dict(ORDER, note="Grüße \u2603", total_price="12.50", weight=1.25, qty=3)
    run = run_row(post_order(client, ctx, message))
    assert run.payload == message
    assert (run.attempts, run.crash_count, run.replays) == (0, 0, 0)
    assert run.status == "queued" and run.received_at is not None
    assert run.enqueued_at is not None and run.payload_hash


def test_driver_errors_surface_as_sqlalchemy_errors_and_drop_a_broken_connection(app):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the driver-level path is PostgreSQL's")
    with pytest.raises(sa_exc.ProgrammingError):
        with autocommitted() as cursor:
            cursor.execute("SELECT * FROM no_such_table")
    with autocommitted() as cursor:  # the connection is usable again, not in a failed state
        assert cursor.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(sa_exc.OperationalError):
        with autocommitted() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    with autocommitted() as cursor:  # the killed connection was not handed out again
        assert cursor.execute("SELECT 1").fetchone() == (1,)


def _backend_pid() -> int:
    with autocommitted() as cursor:
        return cursor.execute("SELECT pg_backend_pid()").fetchone()[0]


def test_each_thread_keeps_its_own_autocommit_connection(app):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the driver-level path is PostgreSQL's")
    mine = _backend_pid()
    assert _backend_pid() == mine  # kept, not checked out and returned

    def in_another_thread() -> int:
        with app.app_context():
            return _backend_pid()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(in_another_thread).result() != mine
    # Nothing is left in a transaction between statements (autocommit).
    with db.engine.connect() as other:
        state = other.execute(
            text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": mine}
        ).scalar_one()
    assert state == "idle"


def test_an_idle_connection_killed_by_the_server_is_replaced_before_use(app, monkeypatch):
    """Like the pool's checkout ping: after a server restart (here, its backend terminated)
    the next statement runs on a new connection instead of failing."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the driver-level path is PostgreSQL's")
    first = _backend_pid()
    with db.engine.connect() as other:
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    monkeypatch.setattr(stores_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # idle long enough
    second = _backend_pid()
    assert second != first


def _insert_without_foreign_keys(connection, sql: str) -> None:
    """Bulk rows for a plan check, in this transaction, without their parent rows."""
    connection.execute(text("SET LOCAL session_replication_role = replica"))
    connection.execute(text(sql))


def test_the_outcome_update_uses_the_index_not_a_scan_of_every_delivery(app):
    """``jsonb_to_recordset`` is planned as 100 rows: without ``run_id = ANY(…)`` PostgreSQL
    hash-joins it against a sequential scan of ``deliveries`` (3.4 ms at 20,000 rows, per
    delivery). Checked with the plan on a table of 5,000 deliveries."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL plan")
    with db.engine.begin() as connection:
        _insert_without_foreign_keys(
            connection,
            "INSERT INTO deliveries (run_id, step_id, idempotency_key, status, attempts,"
            " response_excerpt, created_at, updated_at) SELECT g, 'send', 'k' || g,"
            " 'acknowledged', 1, '', now(), now() FROM generate_series(1, 5000) g",
        )
        connection.execute(text("ANALYZE deliveries"))
        sql = _OUTCOMES_PG.format(outcomes=":outcomes", run_ids="CAST(:ids AS integer[])")
        outcome = {
            "run_id": 42,
            "step_id": "send",
            "status": "acknowledged",
            "response_code": 201,
            "response_excerpt": "",
            "last_error": None,
            "acknowledged_at": None,
            "updated_at": "2026-11-27T10:00:00",
        }
        plan = "\n".join(
            row[0]
            for row in connection.execute(
                text("EXPLAIN " + sql), {"outcomes": json.dumps([outcome]), "ids": [42]}
            )
        )
        connection.execute(text("DELETE FROM deliveries"))
    assert "Seq Scan on deliveries" not in plan, plan
    assert "uq_deliveries_run_step" in plan, plan


def _deliveries_seen_by_another_connection(step_id: str = "send_oms") -> dict[int, tuple]:
    with db.engine.connect() as other:
        rows = other.execute(
            select(
                Delivery.run_id,
                Delivery.status,
                Delivery.response_code,
                Delivery.response_excerpt,
                Delivery.last_error,
                Delivery.acknowledged_at.is_not(None),
            ).where(Delivery.step_id == step_id)
        ).all()
    return {row[0]: tuple(row[1:]) for row in rows}


def _fail(ledger, run_id: int, status: DeliveryStatus, code: int, excerpt: str) -> None:
    ledger.fail(
        run_id,
        "send_oms",
        status=status,
        error=f"HTTP {code}",
        response_code=code,
        response_excerpt=excerpt,
    )


def test_the_previous_outcome_is_committed_with_the_next_sending_row(client, make_user, sink, app):
    """One pending outcome (the batch's previous delivery) travels as plain parameters, two
    or more as a JSON array; either way they are committed before the next send."""
    ctx = live_flow(client, make_user, sink)
    runs = [post_order(client, ctx) for _ in range(4)]
    store, ledger = SqlRunStore(), SqlDeliveryLedger(lease_seconds=60)
    for run_id in runs:
        assert store.claim(run_id, lease_seconds=60) is not None
    ledger.begin(runs[0], "send_oms", "k-0", new=True)
    ledger.acknowledge(runs[0], "send_oms", SendResult(201, "created #1"))
    ledger.begin(runs[1], "send_oms", "k-1", new=True)  # carries one outcome
    seen = _deliveries_seen_by_another_connection()
    assert seen[runs[0]] == ("acknowledged", 201, "created #1", None, True)
    assert seen[runs[1]] == ("sending", None, "", None, False)
    _fail(ledger, runs[1], DeliveryStatus.RETRYING, 503, "busy")
    ledger.begin(runs[2], "send_oms", "k-2", new=True)
    assert _deliveries_seen_by_another_connection()[runs[1]] == (
        "retrying",
        503,
        "busy",
        "HTTP 503",
        False,
    )
    # Two outcomes pending at once (a flow with two destinations, say): both written.
    ledger.acknowledge(runs[2], "send_oms", SendResult(200, "ok 2"))
    ledger.begin(runs[2], "send_wms", "k-2b", new=True)
    ledger.acknowledge(runs[2], "send_wms", SendResult(202, "ok 2b"))
    _fail(ledger, runs[1], DeliveryStatus.DEAD_LETTERED, 400, "bad")
    ledger.begin(runs[3], "send_oms", "k-3", new=True)
    seen = _deliveries_seen_by_another_connection()
    assert seen[runs[2]] == ("acknowledged", 200, "ok 2", None, True)
    assert seen[runs[1]] == ("dead_lettered", 400, "bad", "HTTP 400", False)
    assert _deliveries_seen_by_another_connection("send_wms")[runs[2]] == (
        "acknowledged",
        202,
        "ok 2b",
        None,
        True,
    )


def test_a_claim_reads_its_batch_not_the_whole_backlog(app):
    """With 3,000 queued runs, the claim's prepared (generic) plan walks the partial index
    of queued runs in id order and stops at its batch: no sort of every queued run."""
    import re

    from sqlalchemy.dialects import postgresql

    if db.engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL plan")
    compiled = str(
        stores_module._claim_statement(crashed=False).compile(dialect=postgresql.dialect())
    )
    names: list[str] = []

    def numbered(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    sql = re.sub(r"%\((\w+)\)s", numbered, compiled)
    values = {
        "crash_count_1": "0",
        "claim_limit": "12",
        "status": "'running'",
        "attempts_1": "1",
        "claim_now": "now()::timestamp",
        "claim_lease_until": "now()::timestamp",
        "status_1": "'queued'",
    }
    with db.engine.begin() as connection:
        _insert_without_foreign_keys(
            connection,
            "INSERT INTO runs (flow_id, flow_version_id, trigger_kind, payload, payload_hash,"
            " status, received_at, attempts, crash_count, replays)"
            " SELECT 1, 1, 'webhook', '{}', 'h', CASE WHEN g % 4 = 0 THEN 'queued'"
            " ELSE 'succeeded' END, now(), 1, 0, 0 FROM generate_series(1, 12000) g",
        )
        connection.execute(text("ANALYZE runs"))
        connection.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        connection.execute(text(f"PREPARE claim_plan AS {sql}"))
        arguments = ", ".join(values[name] for name in names)
        plan = "\n".join(
            row[0] for row in connection.execute(text(f"EXPLAIN EXECUTE claim_plan({arguments})"))
        )
        connection.execute(text("DEALLOCATE claim_plan"))
        connection.execute(text("DELETE FROM runs"))
    assert "ix_runs_queued_claim" in plan, plan
    assert "Sort" not in plan, plan


def test_search_keys_with_quotes_backslashes_and_emoji_are_stored_as_extracted(
    client, make_user, sink, app
):
    """PostgreSQL's intake sends the keys as one JSON array text: each comes back exactly."""
    from app.models import RunKey
    from app.services import search_keys

    ctx = live_flow(client, make_user, sink)
    message = dict(ORDER, email='ana"o\\connor@example.test', sku="SKU-ü😀-1", order_number="#42")
    run_id = post_order(client, ctx, message)
    stored = set(db.session.execute(select(RunKey.value).where(RunKey.run_id == run_id)).scalars())
    expected = set(search_keys.extract(message, run_row(run_id).business_key))
    assert stored == expected
    assert {"SKU-ü😀-1", 'ana"o\\connor@example.test', "#42"} <= stored
