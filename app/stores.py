"""SQL implementations of the engine's ports (``flows.ports``).

The ledger must survive a ``kill -9`` at any point: the claim commits before any step runs,
and an attempt is committed as ``sending`` before the outbound call. The outcome of the call
(``acknowledged`` or failed) is written with the next delivery's ``sending`` row (one
statement on PostgreSQL), at the latest with the batch's flush; a run's final write waits for
the flush (``SqlRunStore.commit``): at the end of the batch, or sooner when a batch runs long
(``flows.execution.DrainLimits.flush_after_seconds``); a single run (``finish(commit=True)``)
flushes at its finish. A worker killed in between leaves the delivery in flight ``sending``
and the runs ``running``: the sweep re-queues the runs after their lease; the delivery in
flight is re-sent with the same idempotency key, which is what ``sending`` already means, and
the acknowledged ones are skipped. A fenced-out worker still writes what the destinations
answered (a fact about the world), never its run's outcome.

Workers take runs in batches (``claim_batch``): one ``UPDATE … RETURNING`` and one commit
claim up to N queued runs. Per run, on the hot path (first attempt, one deliver step): the
version's definition comes from a per-process cache (versions are immutable once submitted);
the connection row is read again only after a claim saw the connections table change, or
after two seconds (``SqlConnectionResolver``); the delivery is one
statement committed as it executes (``autocommitted``) that also writes the previous
delivery's outcome. Per batch, on PostgreSQL, one statement writes every run's fenced final
``UPDATE``, every step and the last outcome (``_FLUSH_PG``), then one commit.
See bench/README.md.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from flask import current_app
from psycopg.conninfo import make_conninfo
from sqlalchemy import (
    Integer,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc

from app.config import postgres_options
from app.crypto import SecretBox
from app.extensions import db
from app.models import Connection, Delivery, Flow, FlowVersion, Run, RunStep, VersionStatus
from app.models._types import utcnow
from app.models.run import INPUT_FROM_PAYLOAD, INPUT_FROM_STEP
from connectors import json_codec
from connectors.base import SendResult
from flows.ports import ClaimedRun, DeliveryRecord, ResolvedConnection
from flows.results import DeliveryStatus, RunResult, RunStatus

# Lease losses found at a batch's flush are logged as the engine logs its own.
log = logging.getLogger("flowgate.execution")

# The hot path's writes go to the tables (Core), not through the ORM: no unit of work,
# session synchronisation or ORM compile step for rows this process never reads back.
_RUNS = Run.__table__
_DELIVERIES = Delivery.__table__
_STEPS = RunStep.__table__

# The hot statements are built once and executed with parameters: a statement object caches
# its compiled form's key, so re-running it skips the construction, coercion and cache-key
# walk that building an ``update(...).where(...).values(...)`` per call costs (about a
# third of each statement's CPU in the worker). Bound names in WHERE clauses start with
# ``w_`` so they never clash with the SET columns, which come from the parameter keys.
_INSERT_DELIVERY = insert(_DELIVERIES)
# The same at the driver (``autocommitted``), PostgreSQL's hot path.
_INSERT_DELIVERY_PG = """
    INSERT INTO deliveries (run_id, step_id, idempotency_key, attempts, status,
                            response_excerpt, created_at, updated_at)
    VALUES (%(run_id)s, %(step_id)s, %(idempotency_key)s, %(attempts)s, %(status)s,
            %(response_excerpt)s, %(created_at)s, %(updated_at)s)
"""
# Delivery outcomes as rows of a JSON array (``jsonb_to_recordset``: JSON nulls become SQL
# NULLs); shared by the flush and by a ``sending`` INSERT that carries the outcomes before it.
# ``run_id = ANY(<the run ids>)`` is there for the planner: it takes the function for 100
# rows and would hash-join them against a sequential scan of the whole table (3.4 ms at
# 20,000 deliveries, growing with the table); with it, the unique index is used.
_OUTCOMES_PG = """
    UPDATE deliveries AS d
    SET status = o.status, response_code = o.response_code,
        response_excerpt = o.response_excerpt, last_error = o.last_error,
        acknowledged_at = COALESCE(o.acknowledged_at, d.acknowledged_at),
        updated_at = o.updated_at
    FROM jsonb_to_recordset(CAST({outcomes} AS jsonb)) AS o(
        run_id integer, step_id text, status text, response_code integer,
        response_excerpt text, last_error text, acknowledged_at timestamp,
        updated_at timestamp)
    WHERE d.run_id = o.run_id AND d.step_id = o.step_id AND d.run_id = ANY({run_ids})
"""
# The next delivery's ``sending`` row and the outcomes of the deliveries before it, in one
# statement: an acknowledgement is durable by the time the next delivery goes out.
_INSERT_DELIVERY_AFTER_OUTCOMES_PG = (
    "WITH outcomes AS ("
    + _OUTCOMES_PG.format(outcomes="%(outcomes)s", run_ids="%(outcome_runs)s")
    + ")"
    + _INSERT_DELIVERY_PG
)
# The usual case, one outcome before the ``sending`` row (the batch's previous delivery):
# plain parameters and a unique-index lookup. Through ``jsonb_to_recordset`` the same
# outcome cost PostgreSQL 0.77 ms a delivery against 0.12 ms for the INSERT alone
# (pg_stat_statements, bench/README.md round 8), and the worker a JSON encoding.
_INSERT_DELIVERY_AFTER_OUTCOME_PG = (
    """
    WITH outcome AS (
        UPDATE deliveries
        SET status = %(o_status)s, response_code = %(o_response_code)s,
            response_excerpt = %(o_response_excerpt)s, last_error = %(o_last_error)s,
            acknowledged_at = COALESCE(%(o_acknowledged_at)s, acknowledged_at),
            updated_at = %(o_updated_at)s
        WHERE run_id = %(o_run_id)s AND step_id = %(o_step_id)s
    )"""
    + _INSERT_DELIVERY_PG
)
_FINISH_RUN = update(_RUNS).where(
    _RUNS.c.id == bindparam("w_id"),
    _RUNS.c.status == RunStatus.RUNNING.value,
    _RUNS.c.attempts == bindparam("w_attempts"),
)
_EXTEND_LEASE = update(_RUNS).where(_RUNS.c.id == bindparam("w_id"))
_INSERT_STEPS = insert(_STEPS)
# PostgreSQL, a batch's first-attempt runs: every fenced final UPDATE (as ``_FINISH_RUN``),
# their steps and the batch's delivery outcomes in one statement. Rows travel as JSON arrays
# spread by ``jsonb_to_recordset`` (JSON nulls become SQL NULLs, which read back as None just
# the same). Steps are written only for runs whose fence held (``fin``); the outcomes are
# written whatever the fences say. A RETRYING run passes no ``finished_at`` and keeps its own.
# Data-modifying CTEs run even when the final SELECT does not read them.
_FLUSH_PG = text(
    """
    WITH fin AS (
        UPDATE runs AS r
        SET status = f.status, reason = f.reason, lease_until = NULL,
            next_attempt_at = f.next_attempt_at,
            finished_at = COALESCE(f.finished_at, r.finished_at)
        FROM jsonb_to_recordset(CAST(:runs AS jsonb)) AS f(
            id integer, attempts integer, status text, reason text,
            next_attempt_at timestamp, finished_at timestamp)
        WHERE r.id = f.id AND r.status = 'running' AND r.attempts = f.attempts
          AND r.id = ANY(CAST(:run_ids AS integer[]))
        RETURNING r.id
    ), steps AS (
        INSERT INTO run_steps (run_id, position, step_id, status, input, input_ref, output,
                               error, duration_ms, attempt)
        SELECT s.run_id, s.position, s.step_id, s.status, s.input, s.input_ref, s.output,
               s.error, s.duration_ms, s.attempt
        FROM jsonb_to_recordset(CAST(:steps AS jsonb)) AS s(
            run_id integer, position integer, step_id text, status text, input jsonb,
            input_ref text, output jsonb, error jsonb, duration_ms double precision,
            attempt integer)
        WHERE s.run_id IN (SELECT id FROM fin)
    ), outcomes AS ("""
    + _OUTCOMES_PG.format(outcomes=":outcomes", run_ids="CAST(:outcome_runs AS integer[])")
    + """)
    SELECT id FROM fin
    """
)
# Elsewhere (SQLite, retries, replays): the outcomes as one executemany of this UPDATE.
_RECORD_OUTCOME = (
    update(_DELIVERIES)
    .where(
        _DELIVERIES.c.run_id == bindparam("w_run_id"),
        _DELIVERIES.c.step_id == bindparam("w_step_id"),
    )
    .values(
        status=bindparam("status"),
        response_code=bindparam("response_code"),
        response_excerpt=bindparam("response_excerpt"),
        last_error=bindparam("last_error"),
        acknowledged_at=func.coalesce(
            bindparam("acknowledged_at", type_=_DELIVERIES.c.acknowledged_at.type),
            _DELIVERIES.c.acknowledged_at,
        ),
        updated_at=bindparam("updated_at"),
    )
)


class _ThreadConnection:
    """One thread's autocommit connection to one database, and when it was last used."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection
        self.pid = os.getpid()
        self.used_at = time.monotonic()


class _ThreadConnections(threading.local):
    def __init__(self) -> None:
        self.by_database: dict[str, _ThreadConnection] = {}


_thread_connections = _ThreadConnections()
# Connections a forked child inherited: never used there, and kept referenced so that no
# finaliser closes them (closing would end the parent's session on the shared socket).
_inherited: list[_ThreadConnection] = []
# conninfo by engine (rendering a URL per statement would cost more than the statement).
_conninfos: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
# Like the pool's checkout ping (app._ping_idle_connections): a connection idle this long
# is pinged before use, so that a server restart costs a reconnect, not a failed statement.
PING_AFTER_IDLE_SECONDS = 1.0


def _conninfo(engine: Any) -> str:
    conninfo = _conninfos.get(engine)
    if conninfo is None:
        url = engine.url.set(drivername="postgresql")
        # The pool's options too (app._bound_lock_waits): the lock timeout.
        options = postgres_options(current_app.config)
        conninfo = make_conninfo(url.render_as_string(hide_password=False), **options)
        _conninfos[engine] = conninfo
    return conninfo


def _thread_connection(conninfo: str) -> _ThreadConnection:
    held = _thread_connections.by_database.get(conninfo)
    if held is not None and held.pid != os.getpid():
        _inherited.append(held)
        held = None
    if held is not None and not (held.connection.closed or held.connection.broken):
        if time.monotonic() - held.used_at < PING_AFTER_IDLE_SECONDS:
            return held
        try:
            held.connection.execute("")  # an empty query: one round trip, no parse
            return held
        except psycopg.Error:
            held.connection.close()
    held = _ThreadConnection(psycopg.connect(conninfo, autocommit=True))
    _thread_connections.by_database[conninfo] = held
    return held


@contextmanager
def autocommitted() -> Iterator[Any]:
    """A psycopg cursor on this thread's own connection in autocommit mode (PostgreSQL
    only), for the hot paths' transactions of one statement: intake's run, a delivery's
    ``sending`` row.

    The statement commits as it executes: one round trip instead of three (psycopg sends
    BEGIN, the statement and COMMIT separately), and none of SQLAlchemy's per-statement
    work. Client CPU per single-INSERT transaction, measured here: session + commit 420 µs,
    an AUTOCOMMIT SQLAlchemy connection 230 µs, a pooled connection switched to autocommit
    120-140 µs; PostgreSQL's own CPU drops by about a quarter (bench/README.md, round 6).
    The connection is the thread's own, kept in autocommit, not one checked out of the
    pool and switched back and forth: the checkout, the switches and the return were about
    5 % of a web or worker process's CPU (round 7). It is pinged after a second idle, like
    the pool's. Each thread (a gunicorn thread, a worker) holds one per database.

    Driver errors are raised as SQLAlchemy's (``IntegrityError``, ``OperationalError``…) so
    callers handle them as before, and a connection that failed is closed and replaced
    rather than used again.
    """
    conninfo = _conninfo(db.engine)
    held: _ThreadConnection | None = None
    try:
        held = _thread_connection(conninfo)
        with held.connection.cursor() as cursor:
            yield cursor
        held.used_at = time.monotonic()
    except psycopg.Error as exc:
        if held is not None and (
            isinstance(exc, psycopg.OperationalError)
            or held.connection.closed
            or held.connection.broken
        ):
            held.connection.close()
            _thread_connections.by_database.pop(conninfo, None)
        wrapper = next(
            (_SQLALCHEMY_ERRORS[kind] for kind in type(exc).__mro__ if kind in _SQLALCHEMY_ERRORS),
            sa_exc.DBAPIError,
        )
        raise wrapper(None, None, exc) from exc


# psycopg's DB-API error classes → SQLAlchemy's, most specific first in each MRO walk.
_SQLALCHEMY_ERRORS: dict[type, type[sa_exc.DBAPIError]] = {
    psycopg.IntegrityError: sa_exc.IntegrityError,
    psycopg.OperationalError: sa_exc.OperationalError,
    psycopg.DataError: sa_exc.DataError,
    psycopg.ProgrammingError: sa_exc.ProgrammingError,
    psycopg.InternalError: sa_exc.InternalError,
    psycopg.NotSupportedError: sa_exc.NotSupportedError,
    psycopg.InterfaceError: sa_exc.InterfaceError,
    psycopg.DatabaseError: sa_exc.DatabaseError,
}


@dataclass
class _PendingWrites:
    """What the current batch has decided but not yet written (see the module docstring).

    Kept in the SQLAlchemy session's ``info``: it lives exactly as long as the unit of work
    whose commit would have carried it, so a session that is removed or rolled back takes
    its pending writes with it, like uncommitted statements.
    """

    # The latest outcome of each delivery, by (run id, step id): a delivery reached twice in
    # one run (fan-in) keeps only its last, and the ledger reads it back (``get``).
    outcomes: dict[tuple[int, str], dict[str, Any]]
    finishes: list[tuple[ClaimedRun, RunResult, datetime]]


def _pending() -> _PendingWrites:
    info = db.session.info
    pending = info.get("flowgate.pending_writes")
    if pending is None:
        pending = info["flowgate.pending_writes"] = _PendingWrites({}, [])
    return pending


class _Lru:
    """A small thread-safe LRU map (process-local caches of immutable things)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


# What the last claim in this process saw of the connections table: its row count and
# latest ``updated_at`` (every write to a connection goes through the ORM, whose
# ``onupdate`` moves it). A connection row read under one stamp is trusted until a claim
# sees another (see ``SqlConnectionResolver``).
_connections_stamp: list[Any] = [None]
# How long a worker may reuse a connection row at most, even with no change seen (a batch
# with slow destinations claims nothing for minutes; an edited connection is seen within
# this).
CONNECTION_REUSE_SECONDS = 2.0


@dataclass(frozen=True)
class _ConnectionRow:
    stamp: Any
    read_at: float
    connector_key: str
    config: dict[str, Any]
    secrets: dict[str, str]
    limits: tuple[float | None, int | None]  # rate_limit_per_second, max_in_flight


class SqlConnectionResolver:
    """Connections for the engine.

    ``per_batch`` (workers): a connection row is read again only when a claim has seen the
    connections table change since (``_connections_stamp``, returned by every claim), or
    ``CONNECTION_REUSE_SECONDS`` after it was read, instead of once per run (whose commit
    expires it) or once per batch (a SELECT per batch was a tenth of a worker's CPU when
    batches are small); the gate's limits come from the same read (``batch_limits``). So an
    edit reaches every run claimed after it commits. Without ``per_batch`` (test runs,
    previews) every call reads the row.
    """

    def __init__(self, box: SecretBox, *, per_batch: bool = False) -> None:
        self.box = box
        self.per_batch = per_batch
        # Decrypted secrets by ciphertext: a rotated secret is a new ciphertext, so this
        # can never serve a stale secret; it saves a Fernet decrypt per delivery.
        self._secrets = _Lru(256)
        # The last row resolved, kept referenced: the Session's identity map is weak, and
        # the delivery gate reads the same row's limits right after (``runtime.delivery_gate``
        # ``limits_for`` → ``session.get``), which then costs no second SELECT.
        self._last: Connection | None = None

    def _fresh(self, connection_id: int) -> _ConnectionRow | None:
        return _batch_row(connection_id) if self.per_batch else None

    def _read(self, connection_id: int) -> _ConnectionRow | None:
        row = db.session.get(Connection, connection_id)
        self._last = row
        if row is None:
            _rows.pop(connection_id, None)
            return None
        secrets = self._secrets.get(row.secrets_encrypted)
        if secrets is None:
            secrets = self.box.decrypt(row.secrets_encrypted)
            self._secrets.put(row.secrets_encrypted, secrets)
        read = _ConnectionRow(
            _connections_stamp[0],
            time.monotonic(),
            row.connector_key,
            dict(row.config or {}),
            secrets,
            (row.rate_limit_per_second, row.max_in_flight),
        )
        if self.per_batch:
            if len(_rows) > 256:
                _rows.clear()
            _rows[connection_id] = read
        else:
            _rows.pop(connection_id, None)
        return read

    def resolve(self, connection_id: int) -> ResolvedConnection | None:
        row = self._fresh(connection_id) or self._read(connection_id)
        if row is None:
            return None
        return ResolvedConnection(
            connector_key=row.connector_key,
            config=dict(row.config),
            secrets=dict(row.secrets),
        )


# Connection rows read for the current batch by a ``per_batch`` resolver (workers only).
_rows: dict[int, _ConnectionRow] = {}


def _batch_row(connection_id: int) -> _ConnectionRow | None:
    row = _rows.get(connection_id)
    if row is None or row.stamp is None or row.stamp != _connections_stamp[0]:
        return None
    if time.monotonic() - row.read_at > CONNECTION_REUSE_SECONDS:
        return None
    return row


def batch_limits(connection_id: int) -> tuple[float | None, int | None] | None:
    """A connection's (rate limit per second, max in flight) as this worker's resolver read
    it for the current batch, or None when it has not (the caller reads the row)."""
    row = _batch_row(connection_id)
    return None if row is None else row.limits


# Monotonic time of this process's latest claim of each run it holds (claim → finish), so
# that ``begin`` can skip re-extending a lease that the claim set a moment ago.
_claimed_at: dict[int, float] = {}


class SqlDeliveryLedger:
    def __init__(self, lease_seconds: float) -> None:
        self.lease_seconds = lease_seconds

    def _row(self, run_id: int, step_id: str) -> Delivery | None:
        return db.session.execute(
            select(Delivery).where(Delivery.run_id == run_id, Delivery.step_id == step_id)
        ).scalar_one_or_none()

    def get(self, run_id: int, step_id: str) -> DeliveryRecord | None:
        row = self._row(run_id, step_id)
        if row is None:
            return None
        # An outcome this batch has not written yet (a delivery reached again by fan-in).
        pending = _pending().outcomes.get((run_id, step_id))
        status = row.status if pending is None else pending["status"]
        return DeliveryRecord(DeliveryStatus(status), row.attempts)

    def begin(self, run_id: int, step_id: str, idempotency_key: str, *, new: bool = False) -> int:
        """``new``: the caller knows no row exists (the run's first claim, never replayed),
        so the row is INSERTed without looking for it first."""
        now = utcnow()
        # The outcomes of the deliveries before this one are written with its ``sending``
        # row (one statement on PostgreSQL's hot path), so a kill from here on re-sends
        # none of them. A new attempt supersedes an unwritten outcome of its own (fan-in).
        outcomes = _pending().outcomes
        outcomes.pop((run_id, step_id), None)
        # A delivery may take up to its timeout: keep the run's lease ahead of it, unless
        # this process claimed the run so recently that the claim's lease is still whole.
        claimed = _claimed_at.get(run_id)
        extend = claimed is None or time.monotonic() - claimed > 0.05 * self.lease_seconds
        if new:
            row = {
                "run_id": run_id,
                "step_id": step_id,
                "idempotency_key": idempotency_key,
                "attempts": 1,
                "status": DeliveryStatus.SENDING.value,
                "response_excerpt": "",
                "created_at": now,
                "updated_at": now,
            }
            if not extend and db.engine.dialect.name == "postgresql":
                with autocommitted() as cursor:  # the hot path: one round trip
                    if len(outcomes) == 1:
                        (outcome,) = outcomes.values()
                        params = {**row, **{f"o_{k}": v for k, v in outcome.items()}}
                        cursor.execute(_INSERT_DELIVERY_AFTER_OUTCOME_PG, params)
                    elif outcomes:
                        params = {**row, **_outcomes_params(outcomes.values())}
                        cursor.execute(_INSERT_DELIVERY_AFTER_OUTCOMES_PG, params)
                    else:
                        cursor.execute(_INSERT_DELIVERY_PG, row)
                outcomes.clear()
                return 1
            db.session.execute(_INSERT_DELIVERY, row)
            attempts = 1
        else:
            record = self._row(run_id, step_id)
            if record is None:
                record = Delivery(run_id=run_id, step_id=step_id, idempotency_key=idempotency_key)
                db.session.add(record)
            record.attempts = (record.attempts or 0) + 1
            record.status = DeliveryStatus.SENDING.value
            record.updated_at = now
            attempts = record.attempts  # read before the commit expires it (no extra SELECT)
        if extend:
            db.session.execute(
                _EXTEND_LEASE,
                {"w_id": run_id, "lease_until": now + timedelta(seconds=self.lease_seconds)},
            )
        if outcomes:
            db.session.execute(
                _RECORD_OUTCOME, [_core_outcome_params(o) for o in outcomes.values()]
            )
        db.session.commit()
        outcomes.clear()
        return attempts

    def _record(
        self,
        run_id: int,
        step_id: str,
        status: DeliveryStatus,
        *,
        response_code: int | None,
        response_excerpt: str,
        last_error: str | None,
        acknowledged: bool,
    ) -> None:
        # Not written here: the next ``begin`` or the batch's flush writes it (see the
        # module docstring).
        now = utcnow()
        _pending().outcomes[(run_id, step_id)] = {
            "run_id": run_id,
            "step_id": step_id,
            "status": status.value,
            "response_code": response_code,
            "response_excerpt": response_excerpt,
            "last_error": last_error,
            "acknowledged_at": now if acknowledged else None,
            "updated_at": now,
        }

    def acknowledge(self, run_id: int, step_id: str, result: SendResult) -> None:
        self._record(
            run_id,
            step_id,
            DeliveryStatus.ACKNOWLEDGED,
            response_code=result.status_code,
            response_excerpt=result.response_excerpt,
            last_error=None,
            acknowledged=True,
        )

    def fail(
        self,
        run_id: int,
        step_id: str,
        *,
        status: DeliveryStatus,
        error: str,
        response_code: int | None,
        response_excerpt: str,
        uncounted: bool = False,
    ) -> None:
        if uncounted:  # a failed half-open trial gives its attempt back (rare: built per call)
            db.session.execute(
                update(_DELIVERIES)
                .where(_DELIVERIES.c.run_id == run_id, _DELIVERIES.c.step_id == step_id)
                .values(attempts=_DELIVERIES.c.attempts - 1)
            )
        self._record(
            run_id,
            step_id,
            status,
            response_code=response_code,
            response_excerpt=response_excerpt,
            last_error=error,
            acknowledged=False,
        )


def _claim_statement(*, crashed: bool) -> Any:
    """The batch claim: up to ``claim_limit`` queued runs, oldest first, made running.

    Built once per process, not per claim (statements are immutable and SQLAlchemy
    memoizes each one's cache key): building and keying it was about a twentieth of a
    worker's CPU when batches are small (py-spy, bench/README.md round 7). ``FOR UPDATE
    SKIP LOCKED`` (PostgreSQL) lets concurrent workers take disjoint batches without
    waiting on each other; SQLite ignores it (one writer at a time, so the UPDATE is atomic
    there anyway). The outer WHERE repeats the status: the compare-and-set does not depend
    on the subquery's snapshot.
    """
    runs = _RUNS.c
    picked = (
        select(runs.id)
        .where(
            # Inline, not a parameter: only then can a prepared statement's generic plan
            # use the partial index of queued runs (ix_runs_queued_claim, migration 0017).
            runs.status == literal_column(f"'{RunStatus.QUEUED.value}'"),
            runs.crash_count > 0 if crashed else runs.crash_count == 0,
        )
        .order_by(runs.id)
        .limit(bindparam("claim_limit", type_=Integer))
        .with_for_update(skip_locked=True)
        # A CTE, not ``IN (subquery)``: PostgreSQL may rescan a LIMIT … SKIP LOCKED
        # subquery per outer row and then claim more than ``limit`` runs (seen: 5 of 3).
        # A CTE with FOR UPDATE is evaluated once.
        .cte("picked")
    )
    return (
        update(_RUNS)
        .where(runs.id.in_(select(picked.c.id)), runs.status == RunStatus.QUEUED.value)
        .values(
            status=RunStatus.RUNNING.value,
            attempts=runs.attempts + 1,
            lease_until=bindparam("claim_lease_until", type_=runs.lease_until.type),
            started_at=func.coalesce(
                runs.started_at, bindparam("claim_now", type_=runs.started_at.type)
            ),
        )
        .returning(*_claimed_columns())
    )


def _claimed_columns() -> tuple[Any, ...]:
    """What a claim returns. Table columns, not ORM attributes: an ORM-enabled UPDATE …
    RETURNING loads its rows through the ORM (about a tenth of a worker's CPU under load)."""
    runs, versions, connections = _RUNS.c, FlowVersion.__table__.c, Connection.__table__
    return (
        runs.id,
        runs.attempts,
        runs.payload,
        runs.received_at,
        runs.business_key,
        runs.flow_version_id,
        runs.replays,
        select(versions.updated_at)
        .where(versions.id == runs.flow_version_id)
        .scalar_subquery()
        .label("version_stamp"),
        # Uncorrelated: evaluated once per claim (an InitPlan), not per row.
        select(func.count()).select_from(connections).scalar_subquery().label("connections"),
        select(func.max(connections.c.updated_at)).scalar_subquery().label("connections_updated"),
    )


_CLAIM_FRESH = _claim_statement(crashed=False)
_CLAIM_CRASHED = _claim_statement(crashed=True)


class SqlRunStore:
    def __init__(self) -> None:
        # Definitions by (version id, version updated_at). Versions are immutable once
        # submitted (app/services/flows.py), and the claim returns the version row's
        # ``updated_at``, so an id reused after a delete (SQLite rowids, test databases
        # truncated between tests) or any change to the row misses the cache. Drafts are
        # never cached.
        self._definitions = _Lru(128)

    def _definition(self, version_id: int, stamp: object) -> tuple[Any, str | None]:
        cached = self._definitions.get((version_id, stamp))
        if cached is not None:
            return cached
        row = db.session.execute(
            select(FlowVersion.definition, FlowVersion.status, Flow.slug)
            .join(Flow, Flow.id == FlowVersion.flow_id)
            .where(FlowVersion.id == version_id)
        ).one()
        value = (row.definition, row.slug)
        if row.status != VersionStatus.DRAFT.value and stamp is not None:
            self._definitions.put((version_id, stamp), value)
        return value

    def _claimed(self, row: Any, now: Any) -> ClaimedRun:
        if len(_claimed_at) > 10_000:  # runs whose execution raised never reach finish
            _claimed_at.clear()
        _claimed_at[row.id] = time.monotonic()
        _connections_stamp[0] = (row.connections, row.connections_updated)
        definition, slug = self._definition(row.flow_version_id, row.version_stamp)
        age = max(0.0, (now - row.received_at).total_seconds())
        return ClaimedRun(
            row.id,
            row.attempts,
            row.payload,
            definition,
            age,
            flow=slug,
            business_key=row.business_key,
            # The first claim of a never-replayed run: no delivery or step rows exist yet.
            first=row.attempts == 1 and not row.replays,
        )

    def claim(self, run_id: int, lease_seconds: float) -> ClaimedRun | None:
        """One ``UPDATE … RETURNING`` (compare-and-set on status and lease), then commit."""
        now = utcnow()
        claimable = or_(
            Run.status == RunStatus.QUEUED.value,
            and_(Run.status == RunStatus.RUNNING.value, Run.lease_until < now),
        )
        row = db.session.execute(
            update(Run)
            .where(Run.id == run_id, claimable)
            .values(
                status=RunStatus.RUNNING.value,
                attempts=Run.attempts + 1,
                # Taking over an expired lease: its worker crashed or hung (one lost lease,
                # counted once: the sweep's re-queue counts the others, see app.services.sweep).
                crash_count=case(
                    (Run.status == RunStatus.RUNNING.value, Run.crash_count + 1),
                    else_=Run.crash_count,
                ),
                lease_until=now + timedelta(seconds=lease_seconds),
                started_at=func.coalesce(Run.started_at, now),
            )
            .returning(*_claimed_columns())
            .execution_options(synchronize_session=False)
        ).first()
        db.session.commit()
        return None if row is None else self._claimed(row, now)

    def _claim_queued(self, limit: int, lease_seconds: float, *, crashed: bool) -> list[Any]:
        now = utcnow()
        rows = db.session.execute(
            _CLAIM_CRASHED if crashed else _CLAIM_FRESH,
            {
                "claim_limit": limit,
                "claim_now": now,
                "claim_lease_until": now + timedelta(seconds=lease_seconds),
            },
        ).all()
        db.session.commit()
        return sorted((self._claimed(row, now) for row in rows), key=lambda c: c.run_id)

    def claim_batch(
        self, limit: int, lease_seconds: float, *, crashed: bool = True
    ) -> list[ClaimedRun]:
        """Up to ``limit`` queued runs that never lost a lease, else (``crashed``) one run
        that did."""
        batch = self._claim_queued(limit, lease_seconds, crashed=False)
        if batch or not crashed:
            return batch
        return self._claim_queued(1, lease_seconds, crashed=True)

    def extend_lease(self, run_id: int, lease_seconds: float) -> None:
        self.extend_leases([run_id], lease_seconds)

    def extend_leases(self, run_ids: list[int], lease_seconds: float) -> None:
        if not run_ids:
            return
        db.session.execute(
            update(Run)
            .where(Run.id.in_(run_ids), Run.status == RunStatus.RUNNING.value)
            .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
        )
        db.session.commit()

    def release(self, claimed: ClaimedRun) -> None:
        db.session.execute(
            update(Run)
            .where(
                Run.id == claimed.run_id,
                Run.status == RunStatus.RUNNING.value,
                Run.attempts == claimed.attempts,
            )
            # The claim is taken back too: nothing was written under it, so the next claim
            # may reuse its number (the fencing token) and the run keeps its first-attempt path.
            .values(
                status=RunStatus.QUEUED.value,
                attempts=Run.attempts - 1,
                lease_until=None,
                enqueued_at=utcnow(),
            )
        )
        _claimed_at.pop(claimed.run_id, None)
        db.session.commit()

    def commit(self) -> None:
        """Write the batch's pending outcomes and final writes, then commit."""
        self._flush()
        db.session.commit()

    def rollback(self) -> None:
        db.session.rollback()
        db.session.info.pop("flowgate.pending_writes", None)

    def finish(self, claimed: ClaimedRun, result: RunResult, *, commit: bool = True) -> bool:
        """``commit=False`` (in a batch): recorded now, written by the batch's flush, where
        the fence is checked (``run.lease_lost`` is logged for a run that lost its lease);
        returns True. ``commit=True``: flushed and committed now; returns the fence's verdict.
        """
        _claimed_at.pop(claimed.run_id, None)
        _pending().finishes.append((claimed, result, utcnow()))
        if not commit:
            return True
        lost = self._flush(told=claimed.run_id)
        db.session.commit()
        return claimed.run_id not in lost

    def _flush(self, told: int | None = None) -> set[int]:
        """Write what is pending (not committed); return the run ids whose fence failed.
        A lost lease is logged here, except for ``told``'s (its caller hears of it)."""
        pending = db.session.info.pop("flowgate.pending_writes", None)
        if pending is None or not (pending.finishes or pending.outcomes):
            return set()
        outcomes = list(pending.outcomes.values())
        together, alone = [], []
        postgres = db.engine.dialect.name == "postgresql"
        for finish in pending.finishes:
            claimed, result, _ = finish
            fast = postgres and claimed.first and bool(result.steps)
            (together if fast else alone).append(finish)
        lost: set[int] = set()
        if together or (postgres and outcomes):
            lost |= _flush_pg(together, outcomes)
        elif outcomes:
            db.session.execute(_RECORD_OUTCOME, [_core_outcome_params(o) for o in outcomes])
        for claimed, result, now in alone:
            if not _finish_one(claimed, result, now):
                lost.add(claimed.run_id)
        for claimed, _, _ in pending.finishes:
            if claimed.run_id in lost and claimed.run_id != told:
                log.warning("run.lease_lost run_id=%s attempt=%s", claimed.run_id, claimed.attempts)
        return lost


def _final_values(result: RunResult, now: datetime) -> dict[str, Any]:
    retrying = result.status == RunStatus.RETRYING
    return {
        "status": result.status.value,
        "reason": result.reason,
        "next_attempt_at": now + timedelta(seconds=result.retry_in_seconds or 1)
        if retrying
        else None,
        "finished_at": None if retrying else now,
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _flush_pg(
    finishes: list[tuple[ClaimedRun, RunResult, datetime]], outcomes: list[Any]
) -> set[int]:
    """PostgreSQL: first-attempt finishes and every outcome in one statement (``_FLUSH_PG``)."""
    runs, steps = [], []
    for claimed, result, now in finishes:
        values = _final_values(result, now)
        runs.append(
            {
                "id": claimed.run_id,
                "attempts": claimed.attempts,
                "status": values["status"],
                "reason": values["reason"],
                "next_attempt_at": _iso(values["next_attempt_at"]),
                "finished_at": _iso(values["finished_at"]),
            }
        )
        steps.extend(_step_rows(claimed, result))
    held = db.session.execute(
        _FLUSH_PG,
        {
            "runs": json_codec.dumps_text(runs),
            "run_ids": [run["id"] for run in runs],
            "steps": json_codec.dumps_text(steps),
            **_outcomes_params(outcomes),
        },
    ).scalars()
    return {claimed.run_id for claimed, _, _ in finishes} - set(held)


def _outcomes_params(outcomes: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Delivery outcomes as ``_OUTCOMES_PG`` takes them: a JSON array of rows, and their
    run ids (for the index)."""
    rows = [
        {**o, "acknowledged_at": _iso(o["acknowledged_at"]), "updated_at": _iso(o["updated_at"])}
        for o in outcomes
    ]
    return {
        "outcomes": json_codec.dumps_text(rows),
        "outcome_runs": sorted({o["run_id"] for o in rows}),
    }


def _core_outcome_params(outcome: dict[str, Any]) -> dict[str, Any]:
    params = {k: v for k, v in outcome.items() if k not in ("run_id", "step_id")}
    return {"w_run_id": outcome["run_id"], "w_step_id": outcome["step_id"], **params}


def _finish_one(claimed: ClaimedRun, result: RunResult, now: datetime) -> bool:
    """One run's fenced final write and its steps; False (nothing written) if the fence
    failed: the lease was lost and another worker has claimed the run since."""
    values = _final_values(result, now)
    if values["finished_at"] is None:
        del values["finished_at"]  # a RETRYING run keeps its own
    params = {"w_id": claimed.run_id, "w_attempts": claimed.attempts, "lease_until": None, **values}
    if db.session.execute(_FINISH_RUN, params).rowcount != 1:
        return False
    if not claimed.first:
        db.session.execute(delete(RunStep).where(RunStep.run_id == claimed.run_id))
    if result.steps:
        # One multi-row INSERT (no RETURNING of ids) instead of one ORM object per step.
        db.session.execute(_INSERT_STEPS, _step_rows(claimed, result))
    return True


def _step_rows(claimed: ClaimedRun, result: RunResult) -> list[dict[str, Any]]:
    """The rows of a run's steps. An input that *is* (same object) the run's payload or an
    earlier step's output is stored as a reference (``RunStep.input_ref``), not again."""
    rows = []
    outputs: dict[int, int] = {}  # id(output) -> position, for outputs stored in full
    for position, step in enumerate(result.steps):
        stored, ref = step.input, None
        if isinstance(step.input, (dict, list)):
            if step.input is claimed.payload:
                stored, ref = None, INPUT_FROM_PAYLOAD
            elif id(step.input) in outputs:
                stored, ref = None, f"{INPUT_FROM_STEP}{outputs[id(step.input)]}"
        if isinstance(step.output, (dict, list)):
            outputs.setdefault(id(step.output), position)
        rows.append(
            {
                "run_id": claimed.run_id,
                "position": position,
                "step_id": step.step_id,
                "status": step.status.value,
                "input": stored,
                "input_ref": ref,
                "output": step.output,
                "error": step.error,
                "duration_ms": step.duration_ms,
                "attempt": claimed.attempts,
            }
        )
    return rows
