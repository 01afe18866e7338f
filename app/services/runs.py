from __future__ import annotations

from sqlalchemy import func, select

from app.errors import Invalid, NotFound
from app.extensions import db
from app.models import Run
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
        # Exact match uses the business_key index; that is what support staff paste.
        stmt = stmt.where(Run.business_key == q.strip())
    total = db.session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = db.session.execute(stmt.order_by(Run.id.desc()).limit(limit).offset(offset)).scalars()
    return list(rows), total


def get_run(run_id: int) -> Run:
    run = db.session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    return run
