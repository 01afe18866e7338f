from __future__ import annotations

from typing import Any

from app.api import protected_blueprint
from app.auth import current_actor, require_role
from app.models import Role
from app.schemas.common import ProblemSchema
from app.schemas.dead_letters import (
    DeadLetterListSchema,
    DeadLetterQuerySchema,
    ReplayResultSchema,
    ReplaySchema,
    ReplayStatusQuerySchema,
    ReplayStatusSchema,
)
from app.services import dead_letters as service

bp = protected_blueprint(
    "dead_letters", __name__, "Dead letters: runs that failed for good, and their replay"
)


@bp.get("/dead-letters")
@bp.arguments(DeadLetterQuerySchema, location="query")
@bp.response(200, DeadLetterListSchema)
def list_dead_letters(args: dict[str, Any]) -> dict[str, Any]:
    """Newest first, each with its reason, failed step(s) and their input, and deliveries
    (last response code, redacted response excerpt, attempts). ``reason`` matches a
    substring; ``since``/``until`` bound when the run was dead-lettered."""
    items, total = service.list_dead_letters(
        flow_id=args["flow"],
        reason=args["reason"],
        since=args["since"],
        until=args["until"],
        limit=args["limit"],
        offset=args["offset"],
    )
    return {"items": items, "total": total}


@bp.post("/dead-letters/replay")
@require_role(Role.OWNER.value)
@bp.arguments(ReplaySchema)
@bp.response(202, ReplayResultSchema, description="Replay queued")
@bp.alt_response(200, schema=ReplayResultSchema, description="Dry run: the preview")
@bp.alt_response(403, schema=ProblemSchema, description="Not an integration owner")
@bp.alt_response(409, schema=ProblemSchema, description="A flow has no live version")
@bp.alt_response(422, schema=ProblemSchema)
def replay_dead_letters(data: dict[str, Any]) -> Any:
    """Replay dead letters chosen by ``ids`` or ``filter`` (owners only, audited).

    ``dry_run`` (the default) previews, per run, the version used and each destination with
    the message it would receive, or ``skipped`` when it already acknowledged the message.
    Otherwise the runs are queued again with the same idempotency keys; follow their progress
    with ``GET /api/v1/dead-letters/replay-status?ids=…`` or ``GET /api/v1/runs/<id>``.
    Runs that are not dead letters are listed in ``not_replayable``.
    """
    result = service.replay(data, current_actor())
    return result, 200 if result["dry_run"] else 202


@bp.get("/dead-letters/replay-status")
@bp.arguments(ReplayStatusQuerySchema, location="query")
@bp.response(200, ReplayStatusSchema)
def replay_status(args: dict[str, Any]) -> dict[str, Any]:
    """Progress of replayed runs (``ids=1,2,3``): ``done`` once none is queued, running or
    retrying."""
    return service.replay_status(args["ids"])
