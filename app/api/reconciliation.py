from __future__ import annotations

from typing import Any

from app.api import protected_blueprint
from app.auth import current_actor, require_role
from app.models import Role
from app.schemas.common import ProblemSchema
from app.schemas.reconciliation import (
    ReconcileInputSchema,
    ReconciliationChecksSchema,
    ReconciliationReplaySchema,
    ReportListSchema,
    ReportQuerySchema,
    ReportSchema,
)
from app.services import reconciliation as service
from app.services import reconciliation_checks as checks
from app.services import reconciliation_replay as replay

bp = protected_blueprint(
    "reconciliation", __name__, "Reconciliation: received vs delivered, by business key"
)
_OWNERS = (Role.OWNER.value, Role.ADMIN.value)


@bp.post("/flows/<int:flow_id>/reconciliation")
@require_role(*_OWNERS)
@bp.arguments(ReconcileInputSchema)
@bp.response(201, ReportSchema)
@bp.alt_response(403, schema=ProblemSchema)
@bp.alt_response(404, schema=ProblemSchema)
@bp.alt_response(422, schema=ProblemSchema)
def reconcile_flow(data: dict[str, Any], flow_id: int) -> dict[str, Any]:
    """Reconcile one day now (default: today in the contract's time zone), with the
    external checks; differences open a ``reconciliation`` alert."""
    return service.reconcile_now(flow_id, data["day"], current_actor())


@bp.get("/flows/<int:flow_id>/reconciliation")
@bp.arguments(ReportQuerySchema, location="query")
@bp.response(200, ReportListSchema)
@bp.alt_response(404, schema=ProblemSchema)
def list_reports(args: dict[str, Any], flow_id: int) -> dict[str, Any]:
    """Reports of the flow, newest first (``day`` to pick one day)."""
    return {"items": service.list_reports(flow_id, args["day"], args["limit"])}


@bp.post("/flows/<int:flow_id>/reconciliation/<int:report_id>/replay")
@require_role(Role.OWNER.value)
@bp.response(202, ReconciliationReplaySchema)
@bp.alt_response(403, schema=ProblemSchema)
@bp.alt_response(404, schema=ProblemSchema)
@bp.alt_response(422, schema=ProblemSchema, description="Nothing to replay")
def replay_report(flow_id: int, report_id: int) -> dict[str, Any]:
    """Replay the report's differences in one action (owners only, audited per run): its
    dead letters (the dead-letter replay, original version), and the ids a destination check
    found missing although that destination acknowledged them (re-sent to that destination
    only, same idempotency key)."""
    return replay.replay_differences(flow_id, report_id, current_actor())


@bp.get("/flows/<int:flow_id>/reconciliation/checks")
@bp.response(200, ReconciliationChecksSchema)
@bp.alt_response(404, schema=ProblemSchema)
def list_checks(flow_id: int) -> dict[str, Any]:
    """External checks: ask a system for its ids (or count) of the day, over HTTP or SQL."""
    return {"checks": checks.list_checks(flow_id)}


@bp.put("/flows/<int:flow_id>/reconciliation/checks")
@require_role(*_OWNERS)
@bp.arguments(ReconciliationChecksSchema)
@bp.response(200, ReconciliationChecksSchema)
@bp.alt_response(403, schema=ProblemSchema)
@bp.alt_response(422, schema=ProblemSchema)
def put_checks(data: dict[str, Any], flow_id: int) -> dict[str, Any]:
    """Replace the flow's external checks. ``http``: a GET through an HTTP connection
    (``{day}`` in the path or a query value becomes the ISO date). ``sql``: one read-only
    SELECT on a SQL connection with ``:day``, ``:day_start``, ``:day_end``; refused (422)
    unless the database can plan it. ``ids_expression`` (JSONata) gives the ids, or one
    number in ``count`` mode."""
    return {"checks": checks.put_checks(flow_id, data["checks"], current_actor())}
