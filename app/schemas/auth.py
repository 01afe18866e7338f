from marshmallow import Schema, fields, validate

from app.schemas.common import StrictSchema


class LoginSchema(StrictSchema):
    email = fields.Str(required=True, validate=validate.Length(min=3, max=320))
    password = fields.Str(required=True, validate=validate.Length(min=1, max=1024), load_only=True)


class MeUserSchema(Schema):
    id = fields.Int()
    email = fields.Str()
    name = fields.Str()
    role = fields.Str()


class MeSchema(Schema):
    user = fields.Nested(MeUserSchema)
    csrf_token = fields.Str()
