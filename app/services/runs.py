from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, union

from app.errors import Invalid, NotFound
from app.extensions import db
from app.models import Run, RunKey
from app.services import search_keys
from flows.results import RunStatus


def list_runs(
    *, flow_id: int | None, status: str | None, q: str | None, limit: int, offset: int
) -> tuple[list[Run], int]:
    stmt = select(Run)
    if flow_id is not None:
        stmt = stmt.where(Run.flow_id == flow_id)
    if status:
        if status not in {s.value for s in RunStatus}:
            raise Invalid(f"unknown status '{status}'")
        stmt = stmt.where(Run.status == status)
    if q:
        stmt = stmt.where(Run.id.in_(_matching_run_ids(q)))
    total = db.session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = db.session.execute(stmt.order_by(Run.id.desc()).limit(limit).offset(offset)).scalars()
    return list(rows), total


def last_runs(flow_ids: list[int]) -> dict[int, Run]:
    """The most recent run of each of ``flow_ids`` (one query; flows without runs are absent)."""
    if not flow_ids:
        return {}
    latest = (
        select(func.max(Run.id)).where(Run.flow_id.in_(flow_ids)).group_by(Run.flow_id).subquery()
    )
    rows = db.session.execute(select(Run).where(Run.id.in_(select(latest)))).scalars()
    return {run.flow_id: run for run in rows}


def _matching_run_ids(q: str) -> Any:
    """Exact match on the business key or on a stored search key (order number, SKU, e-mail).

    Both sides are index lookups (``ix_runs_business_key``, ``ix_run_keys_value``); a UNION
    rather than an OR, so neither database falls back to scanning ``runs``.
    """
    value = search_keys.normalise(q)
    return union(
        select(Run.id).where(Run.business_key == q.strip()),
        select(RunKey.run_id).where(RunKey.value == value),
    )


def get_run(run_id: int) -> Run:
    run = db.session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    return run
