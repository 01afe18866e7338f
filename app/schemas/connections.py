from typing import Any

from marshmallow import Schema, fields, post_dump, validate

from app.schemas.common import StrictSchema, UtcDateTime


class ConnectionCreateSchema(StrictSchema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    connector = fields.Str(required=True)
    config = fields.Dict(load_default=dict)
    secrets = fields.Dict(keys=fields.Str(), values=fields.Str(allow_none=True), load_default=dict)
    system_id = fields.Int(allow_none=True, load_default=None)
    rate_limit_per_second = fields.Float(
        allow_none=True, load_default=None, validate=validate.Range(min=0.1, max=10_000)
    )
    max_in_flight = fields.Int(
        allow_none=True, load_default=None, validate=validate.Range(min=1, max=1_000)
    )


class ConnectionUpdateSchema(StrictSchema):
    name = fields.Str(validate=validate.Length(min=1, max=200))
    config = fields.Dict()
    secrets = fields.Dict(keys=fields.Str(), values=fields.Str(allow_none=True))
    system_id = fields.Int(allow_none=True)
    rate_limit_per_second = fields.Float(
        allow_none=True, validate=validate.Range(min=0.1, max=10_000)
    )
    max_in_flight = fields.Int(allow_none=True, validate=validate.Range(min=1, max=1_000))


class ConnectionSchema(Schema):
    """Secrets never leave: each secret field appears only as ``has_<field>``."""

    id = fields.Int()
    name = fields.Str()
    connector = fields.Str()
    config = fields.Dict()
    system_id = fields.Int(allow_none=True)
    rate_limit_per_second = fields.Float(allow_none=True)
    max_in_flight = fields.Int(allow_none=True)
    breaker = fields.Dict(metadata={"description": "closed | open | half_open, shared by workers"})
    created_at = UtcDateTime()
    updated_at = UtcDateTime()

    @post_dump(pass_original=True)
    def keep_secret_flags(self, data: dict[str, Any], original: Any, **_: Any) -> dict[str, Any]:
        # Views add one ``has_<field>`` boolean per secret field of the connector.
        data.update({k: v for k, v in original.items() if k.startswith("has_")})
        return data


class ConnectionListSchema(Schema):
    items = fields.List(fields.Dict())
    total = fields.Int()
