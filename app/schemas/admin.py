"""User creation and the read-only settings view (admins)."""

from marshmallow import Schema, fields, validate

from app.schemas.common import StrictSchema


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
