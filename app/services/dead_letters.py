"""Dead letters: runs that ended ``dead_lettered``; list them, preview a replay, replay them.

A dead letter is a ``Run`` in status ``dead_lettered`` (a permanent delivery error, retries
exhausted, a mapping error, or a run that kept killing its worker). Replaying one puts the run
back in the queue with its ledger intact:

- deliveries the destination already acknowledged stay acknowledged, so the engine skips them;
- every other delivery of the version used keeps its row, hence its idempotency key, and gets
  a fresh retry budget (status ``retrying``, attempts 0);
- ``version="original"`` runs the version the message was received with, ``"live"`` the
  flow's live version (after a mapping fix); the run's ``flow_version_id`` points at the one
  used and ``original_version_id`` remembers the original while they differ.

A preview (``dry_run``, the default) runs the chosen version in simulate mode and sends
nothing. Progress of a replay is the status of its runs (``replay_status``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.orm import selectinload

from app import runtime
from app.errors import Conflict, Forbidden
from app.extensions import db
from app.models import Connection, Delivery, Flow, FlowVersion, Role, Run, User, VersionStatus
from app.models._types import utcnow
from app.queues import enqueue_runs
from app.services import audit
from app.stores import SqlConnectionResolver
from flows.definition import FlowDefinition, base_step_id
from flows.engine import FlowRunner, idempotency_key
from flows.results import DeliveryStatus, RunStatus, StepStatus

MAX_RUNS_PER_REPLAY = 1000
BATCH = 200  # runs per transaction (and per enqueue) when replaying for real
_DEAD = RunStatus.DEAD_LETTERED.value
_FAILED_STEP_STATUSES = (StepStatus.FAILED.value, StepStatus.RETRYING.value)


# -- listing -----------------------------------------------------------------------------


def _naive_utc(value: datetime | None) -> datetime | None:
    """Timestamps are stored as naive UTC; accept aware ones from the wire."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _dead_letters(
    flow_id: int | None, reason: str | None, since: datetime | None, until: datetime | None
) -> Any:
    stmt = select(Run).where(Run.status == _DEAD)
    if flow_id is not None:
        stmt = stmt.where(Run.flow_id == flow_id)
    if reason:
        stmt = stmt.where(func.lower(Run.reason).contains(reason.strip().lower(), autoescape=True))
    if since is not None:
        stmt = stmt.where(Run.finished_at >= _naive_utc(since))
    if until is not None:
        stmt = stmt.where(Run.finished_at < _naive_utc(until))
    return stmt


def _with_details(stmt: Any) -> Any:
    return stmt.options(
        selectinload(Run.flow),
        selectinload(Run.version),
        selectinload(Run.steps),
        selectinload(Run.deliveries),
    )


def list_dead_letters(
    *,
    flow_id: int | None,
    reason: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """Newest dead letter first; ``reason`` is a case-insensitive substring, ``since`` and
    ``until`` bound the time the run was dead-lettered (``finished_at``)."""
    stmt = _dead_letters(flow_id, reason, since, until)
    total = db.session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = db.session.execute(
        _with_details(stmt)
        .order_by(Run.finished_at.desc(), Run.id.desc())
        .limit(limit)
        .offset(offset)
    ).scalars()
    return [describe(run) for run in rows], total


def _delivery_view(row: Delivery) -> dict[str, Any]:
    return {
        "step_id": row.step_id,
        "idempotency_key": row.idempotency_key,
        "status": row.status,
        "attempts": row.attempts,
        "response_code": row.response_code,
        "response_excerpt": row.response_excerpt or "",  # redacted by the connector
        "last_error": row.last_error,
        "acknowledged_at": row.acknowledged_at,
        "updated_at": row.updated_at,
    }


def describe(run: Run) -> dict[str, Any]:
    """A dead letter with what an operator needs to decide on a fix: why, where, with what."""
    deliveries = {d.step_id: d for d in run.deliveries}
    failed = [
        {
            "step_id": step.step_id,
            "status": step.status,
            "error": step.error,
            "input": step.input,
            "attempt": step.attempt,
            "delivery": (
                _delivery_view(deliveries[step.step_id]) if step.step_id in deliveries else None
            ),
        }
        for step in run.steps
        if step.status in _FAILED_STEP_STATUSES
    ]
    return {
        "id": run.id,
        "flow_id": run.flow_id,
        "flow_name": run.flow.name,
        "flow_version": run.version.number,
        "business_key": run.business_key,
        "reason": run.reason,
        "attempts": run.attempts,
        "replays": run.replays,
        "replayed_at": run.replayed_at,
        "received_at": run.received_at,
        "finished_at": run.finished_at,
        "failed_steps": failed,
        "deliveries": [_delivery_view(d) for d in run.deliveries],
    }


# -- selecting what to replay ------------------------------------------------------------


def _select_by_ids(ids: Sequence[int]) -> tuple[list[Run], list[dict[str, Any]]]:
    wanted = sorted(set(ids))
    found = {
        run.id: run
        for run in db.session.execute(_with_details(select(Run).where(Run.id.in_(wanted))))
        .scalars()
        .all()
    }
    runs: list[Run] = []
    refused: list[dict[str, Any]] = []
    for run_id in wanted:
        run = found.get(run_id)
        if run is None:
            refused.append({"id": run_id, "reason": "run does not exist"})
        elif run.status != _DEAD:
            refused.append({"id": run_id, "reason": f"run is {run.status}, not dead-lettered"})
        else:
            runs.append(run)
    return runs, refused


def _select_by_filter(spec: dict[str, Any]) -> tuple[list[Run], int]:
    """Oldest first, so messages reach destinations in the order they were received."""
    stmt = _dead_letters(spec.get("flow"), spec.get("reason"), spec.get("since"), spec.get("until"))
    matched = db.session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = db.session.execute(
        _with_details(stmt).order_by(Run.id).limit(MAX_RUNS_PER_REPLAY)
    ).scalars()
    return list(rows), matched


def _target_versions(runs: Iterable[Run], choice: str) -> dict[int, FlowVersion]:
    """The version each run will be replayed with; 409 if a flow has no live version."""
    runs = list(runs)
    if choice == "original":
        original_ids = {run.original_version_id or run.flow_version_id for run in runs}
        versions = {
            v.id: v
            for v in db.session.execute(
                select(FlowVersion).where(FlowVersion.id.in_(original_ids))
            ).scalars()
        }
        return {
            run.id: versions.get(run.original_version_id or run.flow_version_id, run.version)
            for run in runs
        }
    flow_ids = {run.flow_id for run in runs}
    live = {
        v.flow_id: v
        for v in db.session.execute(
            select(FlowVersion).where(
                FlowVersion.flow_id.in_(flow_ids), FlowVersion.status == VersionStatus.LIVE.value
            )
        ).scalars()
    }
    missing = sorted(flow_ids - live.keys())
    if missing:
        names = db.session.execute(select(Flow.id, Flow.name).where(Flow.id.in_(missing))).all()
        raise Conflict(
            "no live version to replay with for "
            + ", ".join(f"flow {fid} '{name}'" for fid, name in names)
            + "; approve a version or replay with version 'original'",
            flow_ids=missing,
        )
    return {run.id: live[run.flow_id] for run in runs}


# -- preview -----------------------------------------------------------------------------


def _simulator() -> FlowRunner:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return FlowRunner(
        registry=runtime.registry(app),
        connections=SqlConnectionResolver(runtime.secret_box(app)),
        deliveries=None,
        http=None,
        key_prefix=runtime.idempotency_prefix(app),
        simulate=True,
        evaluator=runtime.mapping_evaluator(app),
    )


def _connection_names(versions: Iterable[FlowVersion]) -> dict[int, str]:
    ids = {
        step["connection_id"]
        for version in versions
        for step in (version.definition or {}).get("steps", [])
        if step.get("connection_id") is not None
    }
    if not ids:
        return {}
    rows = db.session.execute(select(Connection.id, Connection.name).where(Connection.id.in_(ids)))
    return {cid: name for cid, name in rows}


def _preview(
    run: Run, version: FlowVersion, runner: FlowRunner, connections: dict[int, str]
) -> dict[str, Any]:
    """What replaying ``run`` with ``version`` would send, computed without sending."""
    view = _run_ref(run, version)
    try:
        definition = FlowDefinition.from_json(version.definition)
    except (KeyError, TypeError, ValueError) as exc:
        return {**view, "outcome": _DEAD, "reason": f"unreadable flow definition: {exc!r}"}
    result = runner.run(run.id, definition, run.payload)
    ledger = {d.step_id: d for d in run.deliveries}
    destinations = []
    for step_result in result.steps:
        if step_result.status != StepStatus.SIMULATED:
            continue
        step = definition.step(step_result.step_id)
        recorded = step_result.step_id  # ``to_erp[2]``: one item of a split, its own delivery
        previous = ledger.get(recorded)
        acknowledged = previous is not None and previous.status == DeliveryStatus.ACKNOWLEDGED
        destinations.append(
            {
                "step_id": recorded,
                "connector": step.connector,
                "connection_id": step.connection_id,
                "connection_name": connections.get(step.connection_id or 0),
                "action": "skipped" if acknowledged else "sent",
                "previous_status": previous.status if previous is not None else None,
                "idempotency_key": (
                    previous.idempotency_key
                    if previous is not None
                    else idempotency_key(runner.key_prefix, run.id, recorded)
                ),
                "message": None if acknowledged else step_result.output,
            }
        )
    return {
        **view,
        "outcome": result.status.value,
        "reason": result.reason,
        "destinations": destinations,
    }


def _run_ref(run: Run, version: FlowVersion) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "flow_id": run.flow_id,
        "flow_name": run.flow.name,
        "business_key": run.business_key,
        "previous_version": run.version.number,
        "version": version.number,
    }


# -- replay ------------------------------------------------------------------------------


def _plan(run: Run, version: FlowVersion) -> dict[str, Any]:
    """Everything one replay needs, read before the first commit expires the ORM objects."""
    delivers = [
        s["id"] for s in (version.definition or {}).get("steps", []) if s.get("type") == "deliver"
    ]
    # Below a split every item has its own delivery row (``send_wms[2]``).
    items = [d.step_id for d in run.deliveries if base_step_id(d.step_id) in set(delivers)]
    return {
        "ref": _run_ref(run, version),
        "original_id": run.original_version_id or run.flow_version_id,
        "version_id": version.id,
        "previous_reason": run.reason,
        "destinations": list(dict.fromkeys(delivers + items)),
    }


def requeued(now: datetime) -> dict[str, Any]:
    """The columns of a finished run queued again by a replay (dead letter or re-send)."""
    return {
        "status": RunStatus.QUEUED.value,
        "reason": None,
        "finished_at": None,
        "next_attempt_at": None,
        "lease_until": None,
        "enqueued_at": now,
        # replays > 0: the claim then reads the ledger instead of assuming it empty.
        "replays": Run.replays + 1,
        "replayed_at": now,
        # A fresh crash budget too: the sweep dead-letters a run whose lost leases reached
        # FLOWGATE_MAX_RUN_ATTEMPTS, which a replayed run may already have used up.
        "attempts": 0,
        "crash_count": 0,
    }


def _replay_one(plan: dict[str, Any], choice: str, actor: User, batch: str, now: datetime) -> bool:
    """Queue one dead letter again (in the caller's transaction); False if it moved on."""
    ref = plan["ref"]
    run_id = ref["run_id"]
    moved = db.session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == _DEAD)  # compare-and-set: one replay wins
        .values(
            **requeued(now),
            flow_version_id=plan["version_id"],
            original_version_id=(
                None if plan["version_id"] == plan["original_id"] else plan["original_id"]
            ),
        )
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:
        return False
    # Same rows, same idempotency keys; a fresh retry budget for what was never acknowledged.
    reset = db.session.execute(
        update(Delivery)
        .where(
            Delivery.run_id == run_id,
            Delivery.step_id.in_(plan["destinations"]),
            Delivery.status != DeliveryStatus.ACKNOWLEDGED.value,
        )
        .values(status=DeliveryStatus.RETRYING.value, attempts=0, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    audit.record(
        actor,
        "dead_letter.replayed",
        "run",
        run_id,
        batch=batch,
        flow_id=ref["flow_id"],
        version=choice,
        version_number=ref["version"],
        previous_version_number=ref["previous_version"],
        previous_reason=plan["previous_reason"],
        deliveries_reset=reset.rowcount or 0,
    )
    return True


def _replay(
    runs: list[Run], versions: dict[int, FlowVersion], choice: str, actor: User
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """One transaction per batch of runs; each batch is enqueued once it is committed."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    batch = uuid.uuid4().hex
    plans = [_plan(run, versions[run.id]) for run in runs]
    replayed: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    for start in range(0, len(plans), BATCH):
        now = utcnow()
        ids: list[int] = []
        for plan in plans[start : start + BATCH]:
            if _replay_one(plan, choice, actor, batch, now):
                ids.append(plan["ref"]["run_id"])
                replayed.append({**plan["ref"], "status": RunStatus.QUEUED.value})
            else:
                refused.append(
                    {"id": plan["ref"]["run_id"], "reason": "run is no longer dead-lettered"}
                )
        db.session.commit()
        # After the commit, like intake: losing this call is safe, the sweep re-enqueues.
        enqueue_runs(app, ids)
    return batch, replayed, refused


def replay(data: dict[str, Any], actor: User) -> dict[str, Any]:
    """Preview (``dry_run``) or replay dead letters chosen by ``ids`` or by ``filter``."""
    if actor.role != Role.OWNER.value:
        raise Forbidden("only an integration owner can replay dead letters")
    choice = data["version"]
    if data.get("ids") is not None:
        runs, refused = _select_by_ids(data["ids"])
        matched = len(runs)
    else:
        (runs, matched), refused = _select_by_filter(data["filter"]), []
    versions = _target_versions(runs, choice) if runs else {}
    result: dict[str, Any] = {
        "dry_run": data["dry_run"],
        "version": choice,
        "matched": matched,
        "more": matched > len(runs),
        "batch": None,
    }
    if data["dry_run"]:
        runner = _simulator()
        connections = _connection_names(versions.values())
        previews = [_preview(run, versions[run.id], runner, connections) for run in runs]
        return {**result, "replayable": len(previews), "runs": previews, "not_replayable": refused}
    batch, replayed, lost = _replay(runs, versions, choice, actor)
    return {
        **result,
        "batch": batch,
        "replayed": len(replayed),
        "runs": replayed,
        "not_replayable": refused + lost,
    }


def replay_status(ids: Sequence[int]) -> dict[str, Any]:
    """Progress of replayed runs: their current statuses (a replay is done when none is
    queued, running or retrying)."""
    rows = db.session.execute(
        select(Run.id, Run.status, Run.reason, Run.replays, Run.finished_at)
        .where(Run.id.in_(sorted(set(ids))))
        .order_by(Run.id)
    ).all()
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    final = {s.value for s in RunStatus if s.is_final}
    return {
        "total": len(rows),
        "counts": counts,
        "done": all(row.status in final for row in rows),
        "runs": [
            {
                "id": row.id,
                "status": row.status,
                "reason": row.reason,
                "replays": row.replays,
                "finished_at": row.finished_at,
            }
            for row in rows
        ],
        "missing": sorted(set(ids) - {row.id for row in rows}),
    }
