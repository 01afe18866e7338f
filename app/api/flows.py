from __future__ import annotations

from typing import Any

from app.api import protected_blueprint
from app.auth import current_actor
from app.models import Flow, VersionStatus
from app.schemas.common import ProblemSchema
from app.schemas.flows import (
    DecisionSchema,
    DefinitionCheckSchema,
    DefinitionProblemsSchema,
    DraftSavedSchema,
    DraftSaveQuerySchema,
    DraftSaveSchema,
    FlowCreateSchema,
    FlowListSchema,
    FlowQuerySchema,
    FlowSchema,
    FlowVersionSchema,
    RollbackResultSchema,
    RollbackSchema,
    SubmitSchema,
    VersionReviewSchema,
)
from app.schemas.runs import AcceptedSchema
from app.schemas.triggers import ManualRunSchema
from app.services import flows as service
from app.services import review as review_service
from app.services import runs as runs_service
from app.services import triggers

bp = protected_blueprint("flows", __name__, "Flows, drafts and the review gate")


def _is_webhook(version: Any) -> bool:
    return (
        version is not None and (version.definition.get("trigger") or {}).get("type") == "webhook"
    )


def _flow_view(flow: Flow, last_runs: dict[int, Any] | None = None) -> dict[str, Any]:
    live = service.version_with_status(flow, VersionStatus.LIVE)
    if last_runs is None:
        last_runs = runs_service.last_runs([flow.id])
    draft = service.version_with_status(flow, VersionStatus.DRAFT)
    return {
        "id": flow.id,
        "name": flow.name,
        "slug": flow.slug,
        "description": flow.description,
        "owner": flow.owner,
        "live_version": live.number if live else None,
        "draft_version": draft.number if draft else None,
        "draft_revision": draft.revision if draft else None,
        "webhook_path": f"/hooks/{flow.slug}" if _is_webhook(live) else None,
        "last_run": last_runs.get(flow.id),
        "versions": flow.versions,
        "created_at": flow.created_at,
    }


@bp.get("/flows")
@bp.arguments(FlowQuerySchema, location="query")
@bp.response(200, FlowListSchema)
def list_flows(args: dict[str, Any]) -> dict[str, Any]:
    """List flows (search by name with ``q``)."""
    found = service.list_flows(args.get("q"))
    last_runs = runs_service.last_runs([f.id for f in found])
    items = [_flow_view(f, last_runs) for f in found]
    return {"items": items, "total": len(items)}


@bp.post("/flows")
@bp.arguments(FlowCreateSchema)
@bp.response(201, FlowSchema)
def create_flow(data: dict[str, Any]) -> dict[str, Any]:
    """Create a flow; its accountable owner defaults to the caller."""
    return _flow_view(service.create_flow(data, current_actor()))


@bp.get("/flows/<int:flow_id>")
@bp.response(200, FlowSchema)
@bp.alt_response(404, schema=ProblemSchema)
def get_flow(flow_id: int) -> dict[str, Any]:
    return _flow_view(service.get_flow(flow_id))


def _problem_view(problem: Any, definition: dict[str, Any]) -> dict[str, Any]:
    """A problem with the node it belongs to: ``step`` (a step id, or 'trigger') and
    ``edge`` (an index into edges), so the editor can show it on the canvas."""
    view = problem.to_dict()
    parts = problem.path.split("/")
    if len(parts) > 1 and parts[1] == "trigger":
        view["step"] = "trigger"
    elif len(parts) > 2 and parts[1] in ("steps", "edges") and parts[2].isdigit():
        items = definition.get(parts[1])
        index = int(parts[2])
        if parts[1] == "edges":
            view["edge"] = index
        elif isinstance(items, list) and index < len(items) and isinstance(items[index], dict):
            step_id = items[index].get("id")
            if isinstance(step_id, str):
                view["step"] = step_id
    return view


@bp.post("/flows/validate")
@bp.arguments(DefinitionCheckSchema)
@bp.response(200, DefinitionProblemsSchema)
def validate_definition(data: dict[str, Any]) -> dict[str, Any]:
    """Check a definition without storing it: every problem, with the step it belongs to
    (what the editor shows when it opens a flow)."""
    definition = data["definition"]
    return {"problems": [_problem_view(p, definition) for p in service.problems_of(definition)]}


@bp.put("/flows/<int:flow_id>/draft")
@bp.arguments(DraftSaveSchema)
@bp.arguments(DraftSaveQuerySchema, location="query")
@bp.response(200, DraftSavedSchema)
@bp.alt_response(409, schema=ProblemSchema, description="Stale revision")
@bp.alt_response(422, schema=ProblemSchema, description="Invalid definition, with problems")
def save_draft(data: dict[str, Any], query: dict[str, Any], flow_id: int) -> dict[str, Any]:
    """Save the draft definition; send the ``revision`` you loaded to detect lost updates.
    A definition with problems is refused (422) unless ``allow_problems=true``: then it is
    stored and its problems are returned, each with the ``step`` it belongs to."""
    version, problems = service.save_draft(
        flow_id,
        data["definition"],
        data.get("revision"),
        current_actor(),
        allow_problems=query["allow_problems"],
        contract=data.get("contract", service.KEEP_CONTRACT),
    )
    return {
        "version": version.number,
        "revision": version.revision,
        "content_hash": version.content_hash,
        "problems": [_problem_view(p, data["definition"]) for p in problems],
    }


@bp.get("/flows/<int:flow_id>/versions/<int:number>")
@bp.response(200, FlowVersionSchema)
@bp.alt_response(404, schema=ProblemSchema)
def get_flow_version(flow_id: int, number: int) -> Any:
    return service.get_version(flow_id, number)


@bp.get("/flows/<int:flow_id>/versions/<int:number>/review")
@bp.response(200, VersionReviewSchema)
@bp.alt_response(404, schema=ProblemSchema)
def review_flow_version(flow_id: int, number: int) -> Any:
    """The review page: semantic diff against the live version, guardrails (pass / warn /
    fail; a fail blocks approval), the sample tests' results and a dry run of the whole flow
    on its samples with simulated destinations (nothing is sent)."""
    return review_service.review_page(flow_id, number)


@bp.post("/flows/<int:flow_id>/versions/<int:number>/submit")
@bp.arguments(SubmitSchema)
@bp.response(200, FlowVersionSchema)
@bp.alt_response(409, schema=ProblemSchema)
@bp.alt_response(
    422,
    schema=ProblemSchema,
    description="Problems, failing sample tests, or an incomplete contract (missing: fields)",
)
def submit_flow_version(data: dict[str, Any], flow_id: int, number: int) -> Any:
    """Submit a draft for review; it is immutable from now on. The integration contract
    (sent here or saved with the draft) must be complete; owners are notified."""
    return service.submit_version(
        flow_id, number, current_actor(), data.get("contract", service.KEEP_CONTRACT)
    )


@bp.post("/flows/<int:flow_id>/versions/<int:number>/approve")
@bp.arguments(DecisionSchema)
@bp.response(200, FlowVersionSchema)
@bp.alt_response(403, schema=ProblemSchema, description="Not an owner, or the author")
@bp.alt_response(409, schema=ProblemSchema)
@bp.alt_response(
    422, schema=ProblemSchema, description="Failing guardrails or sample tests, listed"
)
def approve_flow_version(data: dict[str, Any], flow_id: int, number: int) -> Any:
    """Approve (owners only, never the author): the version goes live."""
    return service.approve_version(flow_id, number, current_actor(), data["comment"])


@bp.post("/flows/<int:flow_id>/versions/<int:number>/reject")
@bp.arguments(DecisionSchema)
@bp.response(200, FlowVersionSchema)
@bp.alt_response(403, schema=ProblemSchema)
@bp.alt_response(422, schema=ProblemSchema, description="A comment is required")
def reject_flow_version(data: dict[str, Any], flow_id: int, number: int) -> Any:
    """Reject with a comment (owners only, never the author)."""
    return service.reject_version(flow_id, number, current_actor(), data["comment"])


@bp.post("/flows/<int:flow_id>/versions/<int:number>/withdraw")
@bp.response(200, FlowVersionSchema)
@bp.alt_response(403, schema=ProblemSchema, description="Not the author or a contributor")
@bp.alt_response(409, schema=ProblemSchema, description="Not in review, or the flow has a draft")
def withdraw_flow_version(flow_id: int, number: int) -> Any:
    """Take a version back out of review (its author or a contributor): it becomes the
    flow's draft again, unless the flow already has another draft (409, audited otherwise)."""
    return service.withdraw_version(flow_id, number, current_actor())


@bp.post("/flows/<int:flow_id>/versions/<int:number>/rollback")
@bp.arguments(RollbackSchema)
@bp.response(200, RollbackResultSchema)
@bp.alt_response(403, schema=ProblemSchema, description="Not an integration owner")
@bp.alt_response(409, schema=ProblemSchema, description="Not a previously approved version")
def rollback_flow_version(data: dict[str, Any], flow_id: int, number: int) -> Any:
    """Put a previously approved (retired) version live again, in one step and without a new
    review (owners only, audited as ``flow.rolled_back``); the live version is retired.
    The webhook keeps answering throughout."""
    return service.rollback_version(flow_id, number, current_actor(), data["comment"])


@bp.post("/flows/<int:flow_id>/run")
@bp.arguments(ManualRunSchema)
@bp.response(202, AcceptedSchema)
@bp.alt_response(403, schema=ProblemSchema, description="Not an integration owner or admin")
@bp.alt_response(404, schema=ProblemSchema, description="No such flow")
@bp.alt_response(409, schema=ProblemSchema, description="The flow has no live version")
def run_flow_manually(data: dict[str, Any], flow_id: int) -> tuple[dict[str, Any], int]:
    """Run the flow's live version now with ``payload`` as the message, whatever its trigger
    (owners and admins; audited as ``flow.run_manually``). Answers 202 once the run is
    committed; follow it at ``/api/v1/runs/<run_id>``."""
    accepted = triggers.run_manually(flow_id, data["payload"], current_actor())
    return {"run_id": accepted.run_id, "duplicate": accepted.duplicate}, 202
