from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.schemas.common import UtcDateTime


class LandscapeNodeSchema(Schema):
    id = fields.Str()
    system_id = fields.Int(allow_none=True)
    name = fields.Str()
    kind = fields.Str()
    criticality = fields.Str(allow_none=True)
    owner = fields.Str(allow_none=True)


class WindowCountsSchema(Schema):
    succeeded = fields.Int()
    filtered = fields.Int()
    failed = fields.Int()
    retrying = fields.Int()
    waiting = fields.Int()


class LandscapeEdgeSchema(Schema):
    id = fields.Str()
    flow_id = fields.Int()
    flow_name = fields.Str()
    flow_slug = fields.Str()
    source = fields.Str()
    target = fields.Str()
    health = fields.Str(metadata={"description": "green | amber | red | grey"})
    health_label = fields.Str(metadata={"description": "healthy | degraded | failing | idle"})
    reason = fields.Str()
    breaker = fields.Str()
    counts = fields.Nested(WindowCountsSchema)
    label = fields.Str()


class RiskFactorSchema(Schema):
    key = fields.Str()
    label = fields.Str()
    weight = fields.Float()
    explanation = fields.Str()


class RiskRowSchema(Schema):
    flow_id = fields.Int()
    flow_name = fields.Str()
    source = fields.Str(allow_none=True)
    destinations = fields.List(fields.Str())
    score = fields.Float()
    factors = fields.List(fields.Nested(RiskFactorSchema))


class LandscapeSchema(Schema):
    generated_at = UtcDateTime()
    window_seconds = fields.Int()
    nodes = fields.List(fields.Nested(LandscapeNodeSchema))
    edges = fields.List(fields.Nested(LandscapeEdgeSchema))
    risks = fields.List(fields.Nested(RiskRowSchema))


class ExportQuerySchema(Schema):
    format = fields.Str(load_default="json", validate=validate.OneOf(["json", "csv"]))
    table = fields.Str(
        load_default="integrations",
        validate=validate.OneOf(["systems", "integrations"]),
        metadata={"description": "CSV only: which table"},
    )


class InventorySchema(Schema):
    systems = fields.List(fields.Dict())
    integrations = fields.List(fields.Dict())
