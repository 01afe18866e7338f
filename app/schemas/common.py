from marshmallow import RAISE, Schema, fields


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class UserRefSchema(Schema):
    id = fields.Int()
    email = fields.Str()


class ProblemSchema(Schema):
    type = fields.Str()
    title = fields.Str()
    status = fields.Int()
    detail = fields.Str()
    problems = fields.List(fields.Dict())
    errors = fields.Dict()


class CheckResultSchema(Schema):
    ok = fields.Bool()
    message = fields.Str()


class UtcDateTime(fields.DateTime):
    """Timestamps are stored as naive UTC; say so on the wire (ISO 8601 with 'Z')."""

    def _serialize(self, value, attr, obj, **kwargs):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        if value.tzinfo is None:
            return value.isoformat(timespec="milliseconds") + "Z"
        return value.isoformat(timespec="milliseconds")
