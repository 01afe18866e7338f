"""The flow editor's helpers: test run of a draft, retail sample payloads, recent payloads."""

from __future__ import annotations

from typing import Any

from app.api import protected_blueprint
from app.schemas.common import ProblemSchema
from app.schemas.editor import (
    RecentPayloadListSchema,
    RecentPayloadQuerySchema,
    SampleListSchema,
    SampleSchema,
    TestRunResultSchema,
    TestRunSchema,
)
from app.services import editor as service

bp = protected_blueprint("editor", __name__, "Flow editor: test runs and sample data")


@bp.post("/flows/<int:flow_id>/test-run")
@bp.arguments(TestRunSchema)
@bp.response(200, TestRunResultSchema)
@bp.alt_response(404, schema=ProblemSchema, description="No such flow")
@bp.alt_response(422, schema=ProblemSchema, description="The draft does not parse, or no sample")
def test_run(data: dict[str, Any], flow_id: int) -> dict[str, Any]:
    """Run a draft (sent as ``definition``, else the saved draft) on one sample with every
    destination simulated: nothing is sent and nothing is stored. Each step's input, output,
    time and error, and exactly what each destination would receive (secrets masked).
    Expressions run in the preview's sandbox with the same limits. Any signed-in role."""
    return service.test_run(flow_id, data["definition"], data["sample"], data["sample_index"])


@bp.get("/samples")
@bp.response(200, SampleListSchema)
def list_samples() -> dict[str, Any]:
    """The retail sample payloads (web-shop order, CRM customer, PIM product, WMS stock...)."""
    return {"items": service.list_samples()}


@bp.get("/samples/<name>")
@bp.response(200, SampleSchema)
@bp.alt_response(404, schema=ProblemSchema)
def get_sample(name: str) -> dict[str, Any]:
    """One retail sample with its payload."""
    return service.get_sample(name)


@bp.get("/flows/<int:flow_id>/recent-payloads")
@bp.arguments(RecentPayloadQuerySchema, location="query")
@bp.response(200, RecentPayloadListSchema)
@bp.alt_response(404, schema=ProblemSchema)
def recent_payloads(args: dict[str, Any], flow_id: int) -> dict[str, Any]:
    """The input payloads of the flow's latest runs, newest first, to capture as samples
    (credential-named fields and the flow's connection secrets masked)."""
    return {"items": service.recent_payloads(flow_id, args["limit"])}
