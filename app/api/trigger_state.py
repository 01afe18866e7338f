"""Trigger state of a flow: next schedule tick, poll cursor/errors/pause, webhook URL."""

from __future__ import annotations

from typing import Any

from app.api import protected_blueprint
from app.schemas.common import ProblemSchema
from app.schemas.trigger_state import TriggerStateSchema
from app.services import trigger_state as service

bp = protected_blueprint("trigger_state", __name__, "What a flow's trigger is doing")


@bp.get("/flows/<int:flow_id>/trigger")
@bp.response(200, TriggerStateSchema)
@bp.alt_response(404, schema=ProblemSchema)
def get_trigger_state(flow_id: int) -> dict[str, Any]:
    """The trigger of the live version (else the newest): for schedules the next tick, the
    last one fired and why firing paused; for polls the cursor summary, last and next poll,
    last error and pause; for webhooks the URL. Any signed-in user."""
    return service.trigger_state(flow_id)
