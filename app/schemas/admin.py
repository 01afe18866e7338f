"""User creation, the read-only settings view and the notification outbox (admins)."""

from marshmallow import Schema, fields, validate

from app.schemas.common import StrictSchema, UtcDateTime


class UserCreateSchema(StrictSchema):
    email = fields.Email(required=True, validate=validate.Length(max=320))
    name = fields.Str(load_default="", validate=validate.Length(max=200))
    role = fields.Str(required=True, validate=validate.OneOf(["analyst", "owner", "admin"]))
    password = fields.Str(
        required=True,
        load_only=True,
        metadata={"description": "the initial password: at least 12 characters"},
    )


class SettingSchema(Schema):
    key = fields.Str(metadata={"description": "the environment variable"})
    value = fields.Raw(
        allow_none=True,
        metadata={
            "description": "the effective value; URLs without credentials, secrets only as "
            "'configured' or null"
        },
    )
    secret = fields.Bool(metadata={"description": "a secret: its value is never shown"})
    description = fields.Str()


class SettingListSchema(Schema):
    items = fields.List(fields.Nested(SettingSchema))


class OutboxQuerySchema(Schema):
    status = fields.Str(load_default=None, validate=validate.OneOf(["pending", "sent", "failed"]))
    limit = fields.Int(load_default=50, validate=validate.Range(min=1, max=500))
    offset = fields.Int(load_default=0, validate=validate.Range(min=0))


class OutboxMessageSchema(Schema):
    id = fields.Int()
    channel = fields.Str(metadata={"description": "email or webhook"})
    recipient = fields.Str(metadata={"description": "addresses; a webhook by host only"})
    subject = fields.Str()
    purpose = fields.Str(metadata={"description": "e.g. alert.opened, review.approved"})
    status = fields.Str(metadata={"description": "pending, sent or failed (gave up)"})
    attempts = fields.Int()
    max_attempts = fields.Int()
    next_attempt_at = UtcDateTime(allow_none=True)
    last_attempt_at = UtcDateTime(allow_none=True)
    last_error = fields.Str(allow_none=True, metadata={"description": "redacted"})
    created_at = UtcDateTime()
    sent_at = UtcDateTime(allow_none=True)
    alert_id = fields.Int(allow_none=True)
    flow_version_id = fields.Int(allow_none=True)
    link = fields.Str(allow_none=True, metadata={"description": "the alert or review (UI path)"})


class OutboxListSchema(Schema):
    items = fields.List(fields.Nested(OutboxMessageSchema))
    total = fields.Int()
    counts = fields.Dict(keys=fields.Str(), values=fields.Int())
