from marshmallow import Schema, fields, validate

from app.schemas.common import StrictSchema, UserRefSchema, UtcDateTime


class FlowCreateSchema(StrictSchema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    description = fields.Str(load_default="", validate=validate.Length(max=5000))
    owner_id = fields.Int(load_default=None, allow_none=True)


class ReviewSchema(Schema):
    id = fields.Int()
    decision = fields.Str()
    comment = fields.Str()
    reviewer = fields.Nested(UserRefSchema, allow_none=True)
    created_at = UtcDateTime()


class FlowVersionSchema(Schema):
    id = fields.Int()
    number = fields.Int()
    status = fields.Str()
    revision = fields.Int()
    content_hash = fields.Str()
    definition = fields.Dict()
    author = fields.Nested(UserRefSchema, allow_none=True)
    approved_by = fields.Nested(UserRefSchema, allow_none=True)
    created_at = UtcDateTime()
    updated_at = UtcDateTime()
    submitted_at = UtcDateTime(allow_none=True)
    decided_at = UtcDateTime(allow_none=True)
    live_since = UtcDateTime(allow_none=True)
    reviews = fields.List(fields.Nested(ReviewSchema))


class FlowVersionSummarySchema(Schema):
    number = fields.Int()
    status = fields.Str()
    revision = fields.Int()
    created_at = UtcDateTime()


class FlowSchema(Schema):
    id = fields.Int()
    name = fields.Str()
    slug = fields.Str()
    description = fields.Str()
    owner = fields.Nested(UserRefSchema, allow_none=True)
    live_version = fields.Int(allow_none=True)
    draft_version = fields.Int(allow_none=True)
    draft_revision = fields.Int(allow_none=True)
    webhook_path = fields.Str(allow_none=True)
    versions = fields.List(fields.Nested(FlowVersionSummarySchema))
    created_at = UtcDateTime()


class FlowListSchema(Schema):
    items = fields.List(fields.Nested(FlowSchema))
    total = fields.Int()


class FlowQuerySchema(Schema):
    q = fields.Str(load_default=None)


class DraftSaveSchema(StrictSchema):
    definition = fields.Dict(required=True)
    revision = fields.Int(load_default=None, allow_none=True)


class DraftSavedSchema(Schema):
    version = fields.Int()
    revision = fields.Int()
    content_hash = fields.Str()
    problems = fields.List(fields.Dict())


class DecisionSchema(StrictSchema):
    comment = fields.Str(load_default="", validate=validate.Length(max=10000))


class RollbackSchema(StrictSchema):
    comment = fields.Str(
        load_default="",
        validate=validate.Length(max=10000),
        metadata={"description": "why (kept in the audit log)"},
    )


class RollbackResultSchema(Schema):
    flow_id = fields.Int()
    from_version = fields.Int(allow_none=True, metadata={"description": "retired by the rollback"})
    to_version = fields.Int(metadata={"description": "live again"})
    version = fields.Nested(FlowVersionSchema, metadata={"description": "the live version"})
