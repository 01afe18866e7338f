from marshmallow import Schema, fields, validate

from app.schemas.common import UtcDateTime


class AuditQuerySchema(Schema):
    action = fields.Str(load_default=None, validate=validate.Length(max=64))
    actor = fields.Str(
        load_default=None,
        validate=validate.Length(max=320),
        metadata={"description": "a user id, or an actor label (e-mail address or 'system')"},
    )
    object_type = fields.Str(load_default=None, validate=validate.Length(max=64))
    object_id = fields.Str(load_default=None, validate=validate.Length(max=64))
    since = fields.DateTime(load_default=None, metadata={"description": "at or after"})
    until = fields.DateTime(load_default=None, metadata={"description": "before"})
    limit = fields.Int(load_default=50, validate=validate.Range(min=1, max=500))
    offset = fields.Int(load_default=0, validate=validate.Range(min=0))


class AuditEventSchema(Schema):
    id = fields.Int()
    actor_id = fields.Int(allow_none=True)
    actor_label = fields.Str()
    action = fields.Str()
    object_type = fields.Str()
    object_id = fields.Str(allow_none=True)
    detail = fields.Dict()
    created_at = UtcDateTime()
    prev_hash = fields.Str(metadata={"description": "the previous event's hash"})
    hash = fields.Str(metadata={"description": "SHA-256 over this event and prev_hash"})


class AuditListSchema(Schema):
    items = fields.List(fields.Nested(AuditEventSchema))
    total = fields.Int()


class AuditVerifySchema(Schema):
    ok = fields.Bool()
    checked = fields.Int(metadata={"description": "events read, up to the first broken one"})
    first_broken_id = fields.Int(allow_none=True)
