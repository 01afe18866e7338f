from __future__ import annotations

from typing import Any

from app.api import protected_blueprint
from app.schemas.common import ProblemSchema
from app.schemas.dashboard import DashboardSchema, FlowHealthSchema
from app.services import dashboard as service

bp = protected_blueprint("dashboard", __name__, "Health of every flow and overall")


@bp.get("/dashboard")
@bp.response(200, DashboardSchema)
def get_dashboard() -> dict[str, Any]:
    """Overall and per-flow health: rate, success, dead letters, latency, backlog, breaker."""
    return service.dashboard()


@bp.get("/flows/<int:flow_id>/health")
@bp.response(200, FlowHealthSchema)
@bp.alt_response(404, schema=ProblemSchema)
def get_flow_health(flow_id: int) -> dict[str, Any]:
    """One flow's health card with its 24 h and 7 d sparklines."""
    return service.flow_health(flow_id)
