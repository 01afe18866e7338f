from marshmallow import Schema, fields, validate

from app.schemas.common import StrictSchema


class PreviewSchema(StrictSchema):
    expression = fields.Str(required=True, validate=validate.Length(min=1, max=20000))
    input = fields.Raw(load_default=None, allow_none=True)


class PreviewResultSchema(Schema):
    output = fields.Raw(allow_none=True)
    duration_ms = fields.Float()
