from __future__ import annotations

from marshmallow import Schema, fields

from app.schemas.common import UtcDateTime


class SeriesSchema(Schema):
    runs = fields.List(fields.Int(), metadata={"description": "runs received per bucket"})
    failed = fields.List(
        fields.Int(),
        metadata={"description": "runs dead-lettered or rejected per bucket, by finish time"},
    )


class SparklinesSchema(Schema):
    h24 = fields.Nested(SeriesSchema, data_key="24h", attribute="24h")
    d7 = fields.Nested(SeriesSchema, data_key="7d", attribute="7d")


class HealthSchema(Schema):
    messages_per_minute = fields.Float(metadata={"description": "runs received, last hour"})
    runs_last_hour = fields.Int()
    failed_last_hour = fields.Int(
        metadata={"description": "runs dead-lettered or rejected in the last hour"}
    )
    success_rate = fields.Float(
        allow_none=True,
        metadata={"description": "0..1: succeeded or filtered / runs finished in the last hour"},
    )
    dead_letters = fields.Int(metadata={"description": "runs dead-lettered now"})
    backlog = fields.Int(metadata={"description": "runs queued or waiting for a retry now"})
    running = fields.Int()
    latency_p50_seconds = fields.Float(
        allow_none=True, metadata={"description": "received to finished, runs that succeeded"}
    )
    latency_p95_seconds = fields.Float(allow_none=True)
    breaker = fields.Str(metadata={"description": "worst breaker state: closed/half_open/open"})
    last_success_at = UtcDateTime(allow_none=True)
    sparklines = fields.Nested(
        SparklinesSchema,
        metadata={"description": "24h: 24 hourly buckets; 7d: 28 six-hour buckets; oldest first"},
    )


class FlowHealthSchema(HealthSchema):
    flow_id = fields.Int()
    flow_name = fields.Str()
    flow_slug = fields.Str()


class DashboardSchema(Schema):
    generated_at = UtcDateTime()
    window_seconds = fields.Int()
    overall = fields.Nested(HealthSchema)
    flows = fields.List(fields.Nested(FlowHealthSchema))
