"""Review threads, the integration contract of a draft, notifications, users (pickers and
role changes) and flow export/import."""

from __future__ import annotations

from typing import Any

from app.api import protected_blueprint
from app.auth import current_actor, require_role
from app.schemas.common import ProblemSchema
from app.schemas.flows import (
    CommentCreateSchema,
    CommentListSchema,
    CommentSchema,
    ContractSaveSchema,
    FlowVersionSchema,
    LayoutSaveSchema,
)
from app.schemas.governance import (
    ExportQuerySchema,
    ExportSchema,
    ImportedSchema,
    ImportSchema,
    MarkedReadSchema,
    NotificationListSchema,
    NotificationQuerySchema,
    NotificationSchema,
    ReviewQueueQuerySchema,
    ReviewQueueSchema,
    UserListSchema,
    UserSchema,
    UserUpdateSchema,
)
from app.services import comments, contracts, export, notifications, people
from app.services import flows as flow_service

bp = protected_blueprint("governance", __name__, "Review threads, notifications, export/import")


@bp.get("/reviews")
@bp.arguments(ReviewQueueQuerySchema, location="query")
@bp.response(200, ReviewQueueSchema)
def list_reviews(args: dict[str, Any]) -> dict[str, Any]:
    """The review queue: versions of every flow in review (or another ``status``)."""
    return {"items": comments.versions_by_status(args["status"])}


@bp.get("/flows/<int:flow_id>/versions/<int:number>/comments")
@bp.response(200, CommentListSchema)
@bp.alt_response(404, schema=ProblemSchema)
def list_version_comments(flow_id: int, number: int) -> dict[str, Any]:
    """The review thread of a version, oldest first."""
    return {"items": comments.list_comments(flow_id, number)}


@bp.post("/flows/<int:flow_id>/versions/<int:number>/comments")
@bp.arguments(CommentCreateSchema)
@bp.response(201, CommentSchema)
@bp.alt_response(404, schema=ProblemSchema)
@bp.alt_response(422, schema=ProblemSchema)
def add_version_comment(data: dict[str, Any], flow_id: int, number: int) -> Any:
    """Add to the review thread (every role; audited as ``flow.commented``)."""
    return comments.add_comment(flow_id, number, data["body"], current_actor())


@bp.put("/flows/<int:flow_id>/versions/<int:number>/contract")
@bp.arguments(ContractSaveSchema)
@bp.response(200, FlowVersionSchema)
@bp.alt_response(409, schema=ProblemSchema, description="Not a draft")
@bp.alt_response(422, schema=ProblemSchema, description="Wrong types or unknown references")
def save_version_contract(data: dict[str, Any], flow_id: int, number: int) -> Any:
    """Store the integration contract of a draft (partial while drafting; the saver becomes
    a contributor and may not approve it)."""
    version = flow_service.get_version(flow_id, number)
    contracts.update_contract(version, data["contract"], current_actor())
    return version


@bp.put("/flows/<int:flow_id>/versions/<int:number>/layout")
@bp.arguments(LayoutSaveSchema)
@bp.response(200, FlowVersionSchema)
@bp.alt_response(422, schema=ProblemSchema)
def save_version_layout(data: dict[str, Any], flow_id: int, number: int) -> Any:
    """Move the boxes of any version (live included): layout is not behaviour, so it takes
    no new draft and no approval (audited as ``flow.layout_changed``)."""
    return flow_service.update_layout(flow_id, number, data["layout"], current_actor())


@bp.get("/notifications")
@bp.arguments(NotificationQuerySchema, location="query")
@bp.response(200, NotificationListSchema)
def list_notifications(args: dict[str, Any]) -> Any:
    """The caller's notifications, newest first, with the unread count."""
    return notifications.list_for(current_actor(), unread_only=args["unread"], limit=args["limit"])


@bp.post("/notifications/<int:notification_id>/read")
@bp.response(200, NotificationSchema)
@bp.alt_response(404, schema=ProblemSchema)
def read_notification(notification_id: int) -> Any:
    """Mark one of the caller's notifications as read."""
    return notifications.mark_read(current_actor(), notification_id)


@bp.post("/notifications/read")
@bp.response(200, MarkedReadSchema)
def read_all_notifications() -> Any:
    """Mark all of the caller's notifications as read."""
    return {"marked": notifications.mark_all_read(current_actor())}


@bp.get("/users")
@bp.response(200, UserListSchema)
def list_users() -> Any:
    """Every user (e-mail, name, role), for owner and reviewer pickers (all roles)."""
    return {"items": people.list_users()}


@bp.patch("/users/<int:user_id>")
@bp.arguments(UserUpdateSchema)
@bp.response(200, UserSchema)
@bp.alt_response(403, schema=ProblemSchema, description="Not an admin, or yourself")
@bp.alt_response(404, schema=ProblemSchema)
@require_role("admin")
def update_user(data: dict[str, Any], user_id: int) -> Any:
    """Change a user's role or deactivate them (admins; audited as ``user.role_changed``)."""
    return people.update_user(user_id, data, current_actor())


@bp.get("/flows/<int:flow_id>/export")
@bp.arguments(ExportQuerySchema, location="query")
@bp.response(200, ExportSchema)
@bp.alt_response(404, schema=ProblemSchema)
def export_flow(args: dict[str, Any], flow_id: int) -> Any:
    """One flow version as a portable JSON file: definition with samples and tests, the
    contract; connections by name, systems by name, users by e-mail; never secrets."""
    return export.export_flow(flow_id, args["version"])


@bp.post("/flows/import")
@bp.arguments(ImportSchema)
@bp.response(201, ImportedSchema)
@bp.alt_response(409, schema=ProblemSchema, description="The flow already has a draft")
@bp.alt_response(422, schema=ProblemSchema, description="Problems, listed")
def import_flow(data: dict[str, Any]) -> Any:
    """Import an export file: always a new draft that must be reviewed, never live."""
    version = export.import_flow(data, current_actor())
    return {"flow_id": version.flow_id, "version": version.number, "status": version.status}
