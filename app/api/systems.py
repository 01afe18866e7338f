from __future__ import annotations

from typing import Any

from app.api import protected_blueprint
from app.auth import current_actor, require_role
from app.models import System
from app.schemas.common import ProblemSchema
from app.schemas.systems import (
    SystemCreateSchema,
    SystemListSchema,
    SystemSchema,
    SystemUpdateSchema,
)
from app.services import systems as service

bp = protected_blueprint("systems", __name__, "The landscape inventory")


@bp.get("/systems")
@bp.response(200, SystemListSchema)
def list_systems() -> dict[str, Any]:
    """Every system of the landscape, by name (all roles)."""
    items = service.list_systems()
    return {"items": items, "total": len(items)}


@bp.post("/systems")
@bp.arguments(SystemCreateSchema)
@bp.response(201, SystemSchema)
@bp.alt_response(409, schema=ProblemSchema)
@require_role("owner", "admin")
def create_system(data: dict[str, Any]) -> System:
    """Add a system to the inventory (owners and admins)."""
    return service.create_system(data, current_actor())


@bp.get("/systems/<int:system_id>")
@bp.response(200, SystemSchema)
@bp.alt_response(404, schema=ProblemSchema)
def get_system(system_id: int) -> System:
    return service.get_system(system_id)


@bp.patch("/systems/<int:system_id>")
@bp.arguments(SystemUpdateSchema)
@bp.response(200, SystemSchema)
@bp.alt_response(404, schema=ProblemSchema)
@bp.alt_response(409, schema=ProblemSchema)
@require_role("owner", "admin")
def update_system(data: dict[str, Any], system_id: int) -> System:
    """Change name, kind, owner, criticality or notes (owners and admins; audited)."""
    return service.update_system(system_id, data, current_actor())


@bp.delete("/systems/<int:system_id>")
@bp.response(204)
@bp.alt_response(409, schema=ProblemSchema)
@require_role("owner", "admin")
def delete_system(system_id: int) -> None:
    """Remove a system; refused (409) while connections or contracts reference it."""
    service.delete_system(system_id, current_actor())
