from __future__ import annotations

from typing import Any

from app import runtime
from app.api import protected_blueprint
from app.auth import current_actor, require_role
from app.models import Connection
from app.schemas.common import CheckResultSchema, ProblemSchema
from app.schemas.connections import (
    ConnectionCreateSchema,
    ConnectionListSchema,
    ConnectionSchema,
    ConnectionUpdateSchema,
)
from app.services import connections as service

bp = protected_blueprint("connections", __name__, "Connections (secrets are write-only)")


def _view(row: Connection) -> dict[str, Any]:
    stored = service.stored_secret_fields(row)
    view: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "connector": row.connector_key,
        "config": row.config,
        "system_id": row.system_id,
        "rate_limit_per_second": row.rate_limit_per_second,
        "max_in_flight": row.max_in_flight,
        "breaker": runtime.delivery_gate().state(row.id).to_dict(),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    for field in runtime.registry().spec(row.connector_key).secret_fields:
        view[f"has_{field}"] = field in stored
    return view


@bp.get("/connections")
@bp.response(200, ConnectionListSchema)
def list_connections() -> dict[str, Any]:
    items = ConnectionSchema(many=True).dump([_view(r) for r in service.list_connections()])
    return {"items": items, "total": len(items)}


@bp.post("/connections")
@bp.arguments(ConnectionCreateSchema)
@bp.response(201, ConnectionSchema)
@bp.alt_response(422, schema=ProblemSchema)
def create_connection(data: dict[str, Any]) -> Any:
    """Create a connection; secrets are encrypted and only reported as ``has_<field>``."""
    return _view(service.create_connection(data, current_actor()))


@bp.get("/connections/<int:connection_id>")
@bp.response(200, ConnectionSchema)
@bp.alt_response(404, schema=ProblemSchema)
def get_connection(connection_id: int) -> Any:
    return _view(service.get_connection(connection_id))


@bp.patch("/connections/<int:connection_id>")
@bp.arguments(ConnectionUpdateSchema)
@bp.response(200, ConnectionSchema)
@bp.alt_response(403, schema=ProblemSchema)
@bp.alt_response(422, schema=ProblemSchema)
@require_role("owner", "admin")
def update_connection(data: dict[str, Any], connection_id: int) -> Any:
    """Update (owners and admins); a secret sent as ``********`` keeps its stored value, null
    removes it.

    Changing a connection changes what every flow using it does, without a review, so it is
    reserved to owners. Creating one is open to analysts: a new connection affects nothing
    until a reviewed flow version refers to it."""
    return _view(service.update_connection(connection_id, data, current_actor()))


@bp.post("/connections/<int:connection_id>/test")
@bp.response(200, CheckResultSchema)
def test_connection(connection_id: int) -> Any:
    """Run the connector's check against the stored connection."""
    return service.test_connection(connection_id, current_actor())
