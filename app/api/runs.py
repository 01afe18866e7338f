from __future__ import annotations

from typing import Any

from app.api import protected_blueprint
from app.schemas.common import ProblemSchema
from app.schemas.runs import RunListSchema, RunQuerySchema, RunSchema
from app.services import runs as service

bp = protected_blueprint("runs", __name__, "The run ledger: every accepted message")


@bp.get("/runs")
@bp.arguments(RunQuerySchema, location="query")
@bp.response(200, RunListSchema)
def list_runs(args: dict[str, Any]) -> dict[str, Any]:
    """Newest first; filter by flow, status, or business key (``q``, exact)."""
    items, total = service.list_runs(
        flow_id=args["flow"],
        status=args["status"],
        q=args["q"],
        limit=args["limit"],
        offset=args["offset"],
    )
    return {"items": items, "total": total}


@bp.get("/runs/<int:run_id>")
@bp.response(200, RunSchema)
@bp.alt_response(404, schema=ProblemSchema)
def get_run(run_id: int) -> Any:
    """One run with each step's input, output, status and duration, and its deliveries."""
    return service.get_run(run_id)
