from marshmallow import Schema, fields, validate

from app.schemas.common import StrictSchema, UserRefSchema, UtcDateTime


class NotificationSchema(Schema):
    id = fields.Int()
    kind = fields.Str(metadata={"description": "review.submitted, review.approved, ..."})
    title = fields.Str()
    body = fields.Str()
    link = fields.Str(allow_none=True, metadata={"description": "a path in the UI"})
    created_at = UtcDateTime()
    read_at = UtcDateTime(allow_none=True)


class NotificationListSchema(Schema):
    items = fields.List(fields.Nested(NotificationSchema))
    unread = fields.Int(metadata={"description": "the caller's unread notifications"})


class NotificationQuerySchema(Schema):
    unread = fields.Bool(load_default=False, metadata={"description": "only unread ones"})
    limit = fields.Int(load_default=50, validate=validate.Range(min=1, max=200))


class MarkedReadSchema(Schema):
    marked = fields.Int()


class UserSchema(Schema):
    id = fields.Int()
    email = fields.Str()
    name = fields.Str()
    role = fields.Str()
    active = fields.Bool()


class UserListSchema(Schema):
    items = fields.List(fields.Nested(UserSchema))


class UserUpdateSchema(StrictSchema):
    role = fields.Str(validate=validate.OneOf(["analyst", "owner", "admin"]))
    active = fields.Bool()


class ExportQuerySchema(Schema):
    version = fields.Int(
        load_default=None, metadata={"description": "a version number; default: the live one"}
    )


class ExportSchema(Schema):
    format = fields.Str()
    format_version = fields.Int()
    flow = fields.Dict()
    version = fields.Dict()
    definition = fields.Dict(
        metadata={"description": "connections by name (connection_name), samples and tests"}
    )
    contract = fields.Dict(
        allow_none=True, metadata={"description": "systems by name, owners by e-mail"}
    )


class ImportSchema(Schema):
    """An export document (unknown keys are kept: validation reports them)."""

    class Meta:
        unknown = "include"

    format = fields.Str(required=True)
    format_version = fields.Int(required=True)


class ImportedSchema(Schema):
    flow_id = fields.Int()
    version = fields.Int()
    status = fields.Str(metadata={"description": "always draft"})


class ReviewQueueQuerySchema(Schema):
    status = fields.Str(
        load_default="in_review",
        validate=validate.OneOf(["draft", "in_review", "approved", "rejected", "live", "retired"]),
    )


class ReviewQueueItemSchema(Schema):
    flow_id = fields.Int()
    flow_name = fields.Function(lambda v: v.flow.name)
    number = fields.Int()
    status = fields.Str()
    author = fields.Nested(UserRefSchema, allow_none=True)
    contributor_ids = fields.List(fields.Int())
    submitted_at = UtcDateTime(allow_none=True)
    updated_at = UtcDateTime()


class ReviewQueueSchema(Schema):
    items = fields.List(fields.Nested(ReviewQueueItemSchema))
