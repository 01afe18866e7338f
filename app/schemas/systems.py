from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.models import Criticality, SystemKind
from app.schemas.common import StrictSchema, UserRefSchema, UtcDateTime

KINDS = [k.value for k in SystemKind]
CRITICALITIES = [c.value for c in Criticality]


class SystemCreateSchema(StrictSchema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    kind = fields.Str(required=True, validate=validate.OneOf(KINDS))
    owner_id = fields.Int(load_default=None, allow_none=True)
    criticality = fields.Str(load_default="medium", validate=validate.OneOf(CRITICALITIES))
    notes = fields.Str(load_default="", validate=validate.Length(max=10_000))


class SystemUpdateSchema(StrictSchema):
    name = fields.Str(validate=validate.Length(min=1, max=200))
    kind = fields.Str(validate=validate.OneOf(KINDS))
    owner_id = fields.Int(allow_none=True)
    criticality = fields.Str(validate=validate.OneOf(CRITICALITIES))
    notes = fields.Str(validate=validate.Length(max=10_000))


class SystemSchema(Schema):
    id = fields.Int()
    name = fields.Str()
    kind = fields.Str()
    owner = fields.Nested(UserRefSchema, allow_none=True)
    criticality = fields.Str()
    notes = fields.Str()
    created_at = UtcDateTime()


class SystemListSchema(Schema):
    items = fields.List(fields.Nested(SystemSchema))
    total = fields.Int()
