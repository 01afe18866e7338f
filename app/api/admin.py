"""Admin endpoints: create users, read the effective settings (without secrets), and the
notification outbox (what was sent, what is retrying, what gave up; retry now)."""

from __future__ import annotations

from typing import Any

from app.api import protected_blueprint
from app.auth import current_actor, require_role
from app.schemas.admin import (
    OutboxListSchema,
    OutboxMessageSchema,
    OutboxQuerySchema,
    SettingListSchema,
    UserCreateSchema,
)
from app.schemas.common import ProblemSchema
from app.schemas.governance import UserSchema
from app.services import admin, outbox

bp = protected_blueprint("admin", __name__, "Users, settings and the notification outbox (admins)")


@bp.post("/users")
@require_role("admin")  # outside the arguments: a non-admin is refused before validation
@bp.arguments(UserCreateSchema)
@bp.response(201, UserSchema)
@bp.alt_response(403, schema=ProblemSchema, description="Not an admin")
@bp.alt_response(409, schema=ProblemSchema, description="The e-mail is taken")
@bp.alt_response(422, schema=ProblemSchema, description="Bad e-mail, role or weak password")
def create_user(data: dict[str, Any]) -> Any:
    """Create a user with an initial password of at least 12 characters (admins; audited as
    ``user.created``)."""
    return admin.create_user(data, current_actor())


@bp.get("/settings")
@bp.response(200, SettingListSchema)
@bp.alt_response(403, schema=ProblemSchema, description="Not an admin")
@require_role("admin")
def get_settings() -> Any:
    """The effective settings, read-only: URLs without credentials, webhooks by host only,
    secrets only as configured or not."""
    return {"items": admin.effective_settings(current_actor())}


@bp.get("/outbox")
@require_role("admin")
@bp.arguments(OutboxQuerySchema, location="query")
@bp.response(200, OutboxListSchema)
@bp.alt_response(403, schema=ProblemSchema, description="Not an admin")
def list_outbox(args: dict[str, Any]) -> Any:
    """E-mail and webhook notifications, newest first: ``pending`` (retrying with backoff),
    ``sent`` or ``failed`` (gave up); errors are redacted, webhooks shown by host only."""
    items, total, counts = outbox.list_messages(
        status=args["status"], limit=args["limit"], offset=args["offset"]
    )
    return {"items": items, "total": total, "counts": counts}


@bp.post("/outbox/<int:outbox_id>/retry")
@require_role("admin")
@bp.response(200, OutboxMessageSchema)
@bp.alt_response(403, schema=ProblemSchema, description="Not an admin")
@bp.alt_response(404, schema=ProblemSchema)
@bp.alt_response(409, schema=ProblemSchema, description="Not failed (sent, or still retrying)")
def retry_outbox_message(outbox_id: int) -> Any:
    """Retry a failed notification now, with a fresh set of attempts: the next scheduler
    beat sends it (audited as ``notification.retried``)."""
    return outbox.retry(outbox_id, current_actor())
