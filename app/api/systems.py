from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy import select

from app.api import protected_blueprint
from app.auth import current_actor, require_role
from app.errors import Conflict
from app.extensions import db
from app.models import Criticality, System, SystemKind
from app.schemas.common import StrictSchema, UserRefSchema
from app.services import audit

bp = protected_blueprint("systems", __name__, "The landscape inventory")


class SystemCreateSchema(StrictSchema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    kind = fields.Str(required=True, validate=validate.OneOf([k.value for k in SystemKind]))
    owner_id = fields.Int(load_default=None, allow_none=True)
    criticality = fields.Str(
        load_default="medium", validate=validate.OneOf([c.value for c in Criticality])
    )
    notes = fields.Str(load_default="")


class SystemSchema(Schema):
    id = fields.Int()
    name = fields.Str()
    kind = fields.Str()
    owner = fields.Nested(UserRefSchema, allow_none=True)
    criticality = fields.Str()
    notes = fields.Str()


class SystemListSchema(Schema):
    items = fields.List(fields.Nested(SystemSchema))
    total = fields.Int()


@bp.get("/systems")
@bp.response(200, SystemListSchema)
def list_systems() -> dict[str, Any]:
    items = list(db.session.execute(select(System).order_by(System.name)).scalars())
    return {"items": items, "total": len(items)}


@bp.post("/systems")
@bp.arguments(SystemCreateSchema)
@bp.response(201, SystemSchema)
@require_role("owner", "admin")
def create_system(data: dict[str, Any]) -> System:
    """Add a system to the inventory (owners and admins)."""
    if db.session.execute(select(System.id).where(System.name == data["name"])).first():
        raise Conflict(f"a system named '{data['name']}' exists")
    system = System(**data)
    db.session.add(system)
    db.session.flush()
    audit.record(current_actor(), "system.created", "system", system.id, name=system.name)
    db.session.commit()
    return system
