"""Admin endpoints: create users, read the effective settings (without secrets)."""

from __future__ import annotations

from typing import Any

from app.api import protected_blueprint
from app.auth import current_actor, require_role
from app.schemas.admin import SettingListSchema, UserCreateSchema
from app.schemas.common import ProblemSchema
from app.schemas.governance import UserSchema
from app.services import admin

bp = protected_blueprint("admin", __name__, "Users and settings (admins)")


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
