"""Replay a reconciliation report's differences in one action.

Two kinds of difference can be sent again:

- dead letters (listed by the internal counts, or behind an id a destination check found
  missing): the dead-letter replay, with the version they were received with;
- ids a destination check found missing although our ledger says that destination
  acknowledged them (the run ``succeeded``). A dead-letter replay would skip such a delivery
  (acknowledged deliveries are never sent twice), so these are *re-sent*: the run is queued
  again and only that destination's delivery is reset, keeping its row and idempotency key;
  every other destination's acknowledged delivery is still skipped. Each re-send is audited
  (``reconciliation.resent``) with the check, the steps, the keys and the acknowledgement
  it overrides.

Count-only checks list no ids: nothing of theirs can be replayed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import select, update

from app.errors import Forbidden, Invalid, NotFound
from app.extensions import db
from app.models import Delivery, Flow, ReconciliationReport, Role, Run, User
from app.models._types import utcnow
from app.queues import enqueue_runs
from app.services import audit, dead_letters
from app.services.reconciliation_checks import flow_timezone
from flows import reconcile
from flows.definition import base_step_id
from flows.results import DeliveryStatus, RunStatus

_ACKED = DeliveryStatus.ACKNOWLEDGED.value
_SUCCEEDED = RunStatus.SUCCEEDED.value
_DEAD = RunStatus.DEAD_LETTERED.value


def _missing_at_destinations(report: ReconciliationReport) -> dict[str, dict[str, Any]]:
    """Business key → the destination check(s) that miss it and the steps they cover."""
    found: dict[str, dict[str, Any]] = {}
    for check in report.result.get("external", []):
        if check.get("side") != "destination" or check.get("error"):
            continue
        for key in check.get("missing", []):
            entry = found.setdefault(str(key), {"checks": [], "step_ids": set()})
            entry["checks"].append(check.get("name"))
            entry["step_ids"].update(check.get("step_ids") or [])
    return found


def _runs_of_the_day(flow: Flow, report: ReconciliationReport, keys: list[str]) -> list[Any]:
    start, end = reconcile.day_bounds(report.day, flow_timezone(flow))
    return list(
        db.session.execute(
            select(Run.id, Run.business_key, Run.status, Run.replayed_at)
            .where(
                Run.flow_id == flow.id,
                Run.received_at >= start,
                Run.received_at < end,
                Run.business_key.in_(keys),
            )
            .order_by(Run.id)
        ).all()
    )


def _resend_one(
    run: Any, wanted: dict[str, Any], report: ReconciliationReport, actor: User, now: datetime
) -> dict[str, Any] | None:
    """Queue one succeeded run again with only the checked destination's delivery reset (in
    the caller's transaction); a refusal reason, or None when it is queued."""
    steps = wanted["step_ids"]
    if run.replayed_at is not None and run.replayed_at >= report.created_at:
        # A second click on the same report must not send the same order a third time.
        return {"id": run.id, "reason": "already replayed after this report; reconcile again"}
    if not steps:
        return {"id": run.id, "reason": "the check does not say which deliver step it covers"}
    deliveries = db.session.execute(
        select(Delivery.step_id, Delivery.idempotency_key, Delivery.acknowledged_at).where(
            Delivery.run_id == run.id, Delivery.status == _ACKED
        )
    ).all()
    chosen = [d for d in deliveries if base_step_id(d.step_id) in steps]
    if not chosen:
        return {"id": run.id, "reason": f"no acknowledged delivery to {', '.join(sorted(steps))}"}
    moved = db.session.execute(
        update(Run)
        .where(Run.id == run.id, Run.status == _SUCCEEDED)  # compare-and-set: one replay wins
        .values(**dead_letters.requeued(now))
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:
        return {"id": run.id, "reason": "run is no longer succeeded"}
    db.session.execute(
        update(Delivery)
        .where(Delivery.run_id == run.id, Delivery.step_id.in_([d.step_id for d in chosen]))
        .values(status=DeliveryStatus.RETRYING.value, attempts=0, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    audit.record(
        actor,
        "reconciliation.resent",
        "run",
        run.id,
        report_id=report.id,
        day=report.day.isoformat(),
        business_key=run.business_key,
        checks=wanted["checks"],
        step_ids=[d.step_id for d in chosen],
        idempotency_keys=[d.idempotency_key for d in chosen],
        acknowledged_at=[d.acknowledged_at.isoformat() for d in chosen if d.acknowledged_at],
    )
    return None


def _resend(
    flow: Flow, report: ReconciliationReport, runs: list[Any], missing: dict[str, Any], actor: User
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    now = utcnow()
    resent: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    for run in runs:
        wanted = missing[run.business_key]
        problem = _resend_one(run, wanted, report, actor, now)
        if problem is not None:
            refused.append(problem)
            continue
        resent.append(
            {
                "run_id": run.id,
                "business_key": run.business_key,
                "step_ids": sorted(wanted["step_ids"]),
                "status": RunStatus.QUEUED.value,
            }
        )
    db.session.commit()
    # After the commit, like intake: losing this call is safe, the sweep re-enqueues.
    enqueue_runs(current_app._get_current_object(), [r["run_id"] for r in resent])  # type: ignore[attr-defined]
    return resent, refused


def replay_differences(flow_id: int, report_id: int, actor: User) -> dict[str, Any]:
    """Replay the report's dead letters and re-send the ids a destination check found
    missing, in one action (owners only)."""
    if actor.role != Role.OWNER.value:
        raise Forbidden("only an integration owner can replay a reconciliation's differences")
    report = db.session.get(ReconciliationReport, report_id)
    if report is None or report.flow_id != flow_id:
        raise NotFound(f"flow {flow_id} has no reconciliation report {report_id}")
    flow = db.session.get(Flow, flow_id)
    assert flow is not None  # the report's foreign key cascades
    dead = {d["run_id"] for d in report.result.get("differences", []) if d["status"] == _DEAD}
    missing = _missing_at_destinations(report)
    runs = _runs_of_the_day(flow, report, sorted(missing)) if missing else []
    dead |= {r.id for r in runs if r.status == _DEAD}
    to_resend = [r for r in runs if r.status == _SUCCEEDED]
    if not dead and not to_resend:
        counts_only = any(not e.get("ids_listed", True) for e in report.result.get("external", []))
        hint = " (count-only checks list no ids)" if counts_only else ""
        raise Invalid(f"this report lists nothing to replay: no dead letter, no missing id{hint}")
    result: dict[str, Any] = {
        "dry_run": False,
        "version": "original",
        "batch": None,
        "matched": 0,
        "more": False,
        "replayed": 0,
        "runs": [],
        "not_replayable": [],
    }
    if dead:
        replay = {"ids": sorted(dead), "version": "original", "dry_run": False}
        result = dead_letters.replay(replay, actor)
    resent, refused = _resend(flow, report, to_resend, missing, actor) if to_resend else ([], [])
    return {
        **result,
        "resent": len(resent),
        "resent_runs": resent,
        "not_replayable": result["not_replayable"] + refused,
    }
