"""SQL implementations of the engine's ports (``flows.ports``).

The ledger must survive a ``kill -9`` at any point: the claim commits before any step runs,
and an attempt is committed as ``sending`` before the outbound call. The outcome of the call
(``acknowledged`` or failed) is written at once but committed with the next commit of the
run, at the latest with the run's final write (``finish``), which a fenced-out worker still
commits. A worker killed in between leaves the delivery ``sending``; it is then re-sent with
the same idempotency key, which is what ``sending`` already means. That saves one commit per
delivery (a WAL flush on PostgreSQL, fsyncs on SQLite).

Workers take runs in batches (``claim_batch``): one ``UPDATE … RETURNING`` and one commit
claim up to N queued runs. Per run, on the hot path (first attempt, one deliver step): the
version's definition comes from a per-process cache (versions are immutable once submitted);
the connection is one ``SELECT`` per batch (``SqlConnectionResolver``); the delivery is one
``INSERT`` and a commit, which also carries the previous run's deferred final write; its
acknowledgement one ``UPDATE``; the run's fenced final ``UPDATE`` and one multi-row
``INSERT`` of its steps (on PostgreSQL one statement, ``_FINISH_FIRST_PG``) are committed by
the next run's ``sending`` commit or the batch's last commit. See bench/README.md.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, insert, or_, select, text, update

from app.crypto import SecretBox
from app.extensions import db
from app.models import Connection, Delivery, Flow, FlowVersion, Run, RunStep, VersionStatus
from app.models._types import utcnow
from app.models.run import INPUT_FROM_PAYLOAD, INPUT_FROM_STEP
from connectors.base import SendResult
from flows.ports import ClaimedRun, DeliveryRecord, ResolvedConnection
from flows.results import DeliveryStatus, RunResult, RunStatus

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
_UPDATE_DELIVERY = update(_DELIVERIES).where(
    _DELIVERIES.c.run_id == bindparam("w_run_id"), _DELIVERIES.c.step_id == bindparam("w_step_id")
)
_FINISH_RUN = update(_RUNS).where(
    _RUNS.c.id == bindparam("w_id"),
    _RUNS.c.status == RunStatus.RUNNING.value,
    _RUNS.c.attempts == bindparam("w_attempts"),
)
_EXTEND_LEASE = update(_RUNS).where(_RUNS.c.id == bindparam("w_id"))
_INSERT_STEPS = insert(_STEPS)
# PostgreSQL, a run's first attempt: the fenced final UPDATE (``_FINISH_RUN``) and the
# steps' INSERT in one statement. The steps travel as one JSON array, spread into rows by
# ``jsonb_to_recordset`` (its JSON nulls become SQL NULLs, which read back as None just the
# same), and are written only if the fence held: no row from ``fin``, no steps. A RETRYING
# run passes no ``finished_at`` and keeps its own.
_FINISH_FIRST_PG = text(
    """
    WITH fin AS (
        UPDATE runs
        SET status = :status, reason = :reason, lease_until = NULL,
            next_attempt_at = :next_attempt_at,
            finished_at = COALESCE(:finished_at, finished_at)
        WHERE id = :w_id AND status = 'running' AND attempts = :w_attempts
        RETURNING id
    ), steps AS (
        INSERT INTO run_steps (run_id, position, step_id, status, input, input_ref, output,
                               error, duration_ms, attempt)
        SELECT fin.id, s.position, s.step_id, s.status, s.input, s.input_ref, s.output,
               s.error, s.duration_ms, s.attempt
        FROM fin, jsonb_to_recordset(CAST(:steps AS jsonb)) AS s(
            position integer, step_id text, status text, input jsonb, input_ref text,
            output jsonb, error jsonb, duration_ms double precision, attempt integer)
    )
    SELECT id FROM fin
    """
)


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


# Bumped by every claim in this process: a connection row read for one batch is not
# trusted by the next (see ``SqlConnectionResolver``).
_batch = [0]
# How long a batch may reuse a connection row at most (a batch with slow destinations can
# run for minutes; an edited connection is seen within this).
CONNECTION_REUSE_SECONDS = 2.0


@dataclass(frozen=True)
class _ConnectionRow:
    batch: int
    read_at: float
    connector_key: str
    config: dict[str, Any]
    secrets: dict[str, str]
    limits: tuple[float | None, int | None]  # rate_limit_per_second, max_in_flight


class SqlConnectionResolver:
    """Connections for the engine.

    ``per_batch`` (workers): a connection row is read once per claimed batch (at most
    ``CONNECTION_REUSE_SECONDS``) instead of once per run, whose commit expires it; the
    gate's limits come from the same read (``batch_limits``). Runs claimed later read it again,
    so an edit reaches every run claimed after it. Without ``per_batch`` (test runs, previews)
    every call reads the row.
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
            _batch[0],
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
    if row is None or row.batch != _batch[0]:
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
        return None if row is None else DeliveryRecord(DeliveryStatus(row.status), row.attempts)

    def begin(self, run_id: int, step_id: str, idempotency_key: str, *, new: bool = False) -> int:
        """``new``: the caller knows no row exists (the run's first claim, never replayed),
        so the row is INSERTed without looking for it first."""
        now = utcnow()
        if new:
            db.session.execute(
                _INSERT_DELIVERY,
                {
                    "run_id": run_id,
                    "step_id": step_id,
                    "idempotency_key": idempotency_key,
                    "attempts": 1,
                    "status": DeliveryStatus.SENDING.value,
                    "response_excerpt": "",
                    "created_at": now,
                    "updated_at": now,
                },
            )
            attempts = 1
        else:
            row = self._row(run_id, step_id)
            if row is None:
                row = Delivery(run_id=run_id, step_id=step_id, idempotency_key=idempotency_key)
                db.session.add(row)
            row.attempts = (row.attempts or 0) + 1
            row.status = DeliveryStatus.SENDING.value
            row.updated_at = now
            attempts = row.attempts  # read before the commit expires the row (no extra SELECT)
        # A delivery may take up to its timeout: keep the run's lease ahead of it, unless
        # this process claimed the run so recently that the claim's lease is still whole.
        claimed = _claimed_at.get(run_id)
        if claimed is None or time.monotonic() - claimed > 0.05 * self.lease_seconds:
            db.session.execute(
                _EXTEND_LEASE,
                {"w_id": run_id, "lease_until": now + timedelta(seconds=self.lease_seconds)},
            )
        db.session.commit()
        return attempts

    def _update(self, run_id: int, step_id: str, **values: object) -> None:
        # One UPDATE by the natural key: the row exists since ``begin`` committed it. Not
        # committed here: the next commit of this run carries it (see the module docstring).
        db.session.execute(
            _UPDATE_DELIVERY,
            {"w_run_id": run_id, "w_step_id": step_id, "updated_at": utcnow(), **values},
        )

    def acknowledge(self, run_id: int, step_id: str, result: SendResult) -> None:
        self._update(
            run_id,
            step_id,
            status=DeliveryStatus.ACKNOWLEDGED.value,
            response_code=result.status_code,
            response_excerpt=result.response_excerpt,
            last_error=None,
            acknowledged_at=utcnow(),
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
        self._update(
            run_id,
            step_id,
            status=status.value,
            last_error=error,
            response_code=response_code,
            response_excerpt=response_excerpt,
        )


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

    @staticmethod
    def _returning() -> tuple[Any, ...]:
        return (
            Run.id,
            Run.attempts,
            Run.payload,
            Run.received_at,
            Run.business_key,
            Run.flow_version_id,
            Run.replays,
            select(FlowVersion.updated_at)
            .where(FlowVersion.id == Run.flow_version_id)
            .scalar_subquery()
            .label("version_stamp"),
        )

    def _claimed(self, row: Any, now: Any) -> ClaimedRun:
        if len(_claimed_at) > 10_000:  # runs whose execution raised never reach finish
            _claimed_at.clear()
        _claimed_at[row.id] = time.monotonic()
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
            .returning(*self._returning())
            .execution_options(synchronize_session=False)
        ).first()
        db.session.commit()
        _batch[0] += 1
        return None if row is None else self._claimed(row, now)

    def _claim_queued(self, limit: int, lease_seconds: float, *, crashed: bool) -> list[Any]:
        now = utcnow()
        # Oldest first. ``FOR UPDATE SKIP LOCKED`` (PostgreSQL) lets concurrent workers take
        # disjoint batches without waiting on each other; SQLite ignores it (one writer at a
        # time, so the UPDATE is atomic there anyway). The outer WHERE repeats the status:
        # the compare-and-set does not depend on the subquery's snapshot.
        picked = (
            select(Run.id)
            .where(
                Run.status == RunStatus.QUEUED.value,
                Run.crash_count > 0 if crashed else Run.crash_count == 0,
            )
            .order_by(Run.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            # A CTE, not ``IN (subquery)``: PostgreSQL may rescan a LIMIT … SKIP LOCKED
            # subquery per outer row and then claim more than ``limit`` runs (seen: 5 of 3).
            # A CTE with FOR UPDATE is evaluated once.
            .cte("picked")
        )
        rows = db.session.execute(
            update(Run)
            .where(Run.id.in_(select(picked.c.id)), Run.status == RunStatus.QUEUED.value)
            .values(
                status=RunStatus.RUNNING.value,
                attempts=Run.attempts + 1,
                lease_until=now + timedelta(seconds=lease_seconds),
                started_at=func.coalesce(Run.started_at, now),
            )
            .returning(*self._returning())
            .execution_options(synchronize_session=False)
        ).all()
        db.session.commit()
        _batch[0] += 1
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
        db.session.commit()

    def rollback(self) -> None:
        db.session.rollback()

    def finish(self, claimed: ClaimedRun, result: RunResult, *, commit: bool = True) -> bool:
        now = utcnow()
        values: dict[str, object] = {
            "status": result.status.value,
            "reason": result.reason,
            "lease_until": None,
            "next_attempt_at": None,
        }
        if result.status == RunStatus.RETRYING:
            values["next_attempt_at"] = now + timedelta(seconds=result.retry_in_seconds or 1)
        else:
            values["finished_at"] = now
        params = {"w_id": claimed.run_id, "w_attempts": claimed.attempts, **values}
        _claimed_at.pop(claimed.run_id, None)
        if claimed.first and result.steps and db.engine.dialect.name == "postgresql":
            # The hot path (a run's first attempt): one statement instead of two, and one
            # INSERT of all steps instead of one per step (executemany in pipeline mode).
            steps = json.dumps(_step_rows(claimed, result))
            held = db.session.execute(
                _FINISH_FIRST_PG, {"finished_at": None, **params, "steps": steps}
            ).first()
            if commit:
                db.session.commit()
            return held is not None
        fenced = db.session.execute(_FINISH_RUN, params)
        if fenced.rowcount != 1:
            # Lease lost: write nothing of ours, but keep what the destinations answered
            # (a pending acknowledgement is a fact about the world, not about our lease).
            if commit:
                db.session.commit()
            return False
        if not claimed.first:
            db.session.execute(delete(RunStep).where(RunStep.run_id == claimed.run_id))
        if result.steps:
            # One multi-row INSERT (no RETURNING of ids) instead of one ORM object per step.
            db.session.execute(_INSERT_STEPS, _step_rows(claimed, result))
        if commit:
            db.session.commit()
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
