from __future__ import annotations

from typing import Any

from app.api import protected_blueprint
from app.auth import current_actor, require_role
from app.models import Role
from app.schemas.alerts import (
    AlertListSchema,
    AlertQuerySchema,
    AlertRulesInputSchema,
    AlertRulesSchema,
    AlertSchema,
    ReliabilitySchema,
)
from app.schemas.common import ProblemSchema
from app.services import alert_rules, alerts
from app.services import flows as flow_service

bp = protected_blueprint("alerts", __name__, "Alerts routed to flow owners; MTTD and MTTR")
_OWNERS = (Role.OWNER.value, Role.ADMIN.value)


@bp.get("/alerts")
@bp.arguments(AlertQuerySchema, location="query")
@bp.response(200, AlertListSchema)
def list_alerts(args: dict[str, Any]) -> dict[str, Any]:
    """Newest first; ``state`` open, acknowledged, resolved or active (open + acknowledged)."""
    items, total = alerts.list_alerts(
        state=args["state"], flow_id=args["flow"], limit=args["limit"], offset=args["offset"]
    )
    return {"items": items, "total": total}


@bp.get("/alerts/<int:alert_id>")
@bp.response(200, AlertSchema)
@bp.alt_response(404, schema=ProblemSchema)
def get_alert(alert_id: int) -> dict[str, Any]:
    """One alert with the failing system, last error, failing run and notifications sent."""
    return alerts.get_alert(alert_id)


@bp.post("/alerts/<int:alert_id>/acknowledge")
@require_role(*_OWNERS)
@bp.response(200, AlertSchema)
@bp.alt_response(403, schema=ProblemSchema)
@bp.alt_response(409, schema=ProblemSchema, description="The alert is not open")
def acknowledge_alert(alert_id: int) -> dict[str, Any]:
    """Someone is on it: stops the escalation to on-call (owners and admins; audited)."""
    return alerts.acknowledge(alert_id, current_actor())


@bp.post("/alerts/<int:alert_id>/resolve")
@require_role(*_OWNERS)
@bp.response(200, AlertSchema)
@bp.alt_response(403, schema=ProblemSchema)
@bp.alt_response(409, schema=ProblemSchema, description="Already resolved")
def resolve_alert(alert_id: int) -> dict[str, Any]:
    """Close by hand (alerts also resolve by themselves once the condition clears)."""
    return alerts.resolve(alert_id, current_actor())


@bp.get("/flows/<int:flow_id>/alert-rules")
@bp.response(200, AlertRulesSchema)
@bp.alt_response(404, schema=ProblemSchema)
def get_alert_rules(flow_id: int) -> dict[str, Any]:
    """Effective rules: defaults from the live contract, with this flow's overrides."""
    return alert_rules.describe_rules(flow_service.get_flow(flow_id))


@bp.put("/flows/<int:flow_id>/alert-rules")
@require_role(*_OWNERS)
@bp.arguments(AlertRulesInputSchema)
@bp.response(200, AlertRulesSchema)
@bp.alt_response(403, schema=ProblemSchema)
@bp.alt_response(422, schema=ProblemSchema)
def put_alert_rules(data: dict[str, Any], flow_id: int) -> dict[str, Any]:
    """Replace the flow's overrides; kinds left out go back to their defaults (audited)."""
    return alert_rules.put_rules(flow_service.get_flow(flow_id), data["rules"], current_actor())


@bp.get("/flows/<int:flow_id>/reliability")
@bp.response(200, ReliabilitySchema)
@bp.alt_response(404, schema=ProblemSchema)
def get_reliability(flow_id: int) -> dict[str, Any]:
    """MTTD (first failing event → alert) and MTTR (alert → resolved), average and last over
    30 days, and the flow's open alerts."""
    flow_service.get_flow(flow_id)
    return alerts.reliability(flow_id)
