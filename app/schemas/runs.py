from marshmallow import Schema, fields, validate

from app.schemas.common import UtcDateTime
from app.schemas.editor import Redacted


class RunQuerySchema(Schema):
    flow = fields.Int(load_default=None)
    status = fields.Str(load_default=None)
    q = fields.Str(load_default=None, validate=validate.Length(max=255))
    limit = fields.Int(load_default=50, validate=validate.Range(min=1, max=500))
    offset = fields.Int(load_default=0, validate=validate.Range(min=0))


class RunSummarySchema(Schema):
    id = fields.Int()
    flow_id = fields.Int()
    flow_name = fields.Function(lambda run: run.flow.name)
    flow_version = fields.Function(lambda run: run.version.number)
    status = fields.Str()
    trigger_kind = fields.Str()
    business_key = fields.Str(allow_none=True)
    idempotency_key = fields.Str(allow_none=True)
    attempts = fields.Int()
    error = fields.Str(attribute="reason", allow_none=True)
    received_at = UtcDateTime()
    started_at = UtcDateTime(allow_none=True)
    finished_at = UtcDateTime(allow_none=True)
    next_attempt_at = UtcDateTime(allow_none=True)


class RunStepSchema(Schema):
    step_id = fields.Str()
    status = fields.Str()
    # Credential-named fields of the message are masked in run history (secrets of the
    # connections never reach step data: connectors redact what they record).
    input = Redacted(allow_none=True)
    output = Redacted(allow_none=True)
    error = fields.Dict(allow_none=True)
    duration_ms = fields.Float()
    attempt = fields.Int()


class DeliverySchema(Schema):
    step_id = fields.Str()
    idempotency_key = fields.Str()
    status = fields.Str()
    attempts = fields.Int()
    response_code = fields.Int(allow_none=True)
    response_excerpt = fields.Str()
    last_error = fields.Str(allow_none=True)
    acknowledged_at = UtcDateTime(allow_none=True)


class RunSchema(RunSummarySchema):
    payload = Redacted(allow_none=True)
    steps = fields.List(fields.Nested(RunStepSchema))
    deliveries = fields.List(fields.Nested(DeliverySchema))


class RunListSchema(Schema):
    items = fields.List(fields.Nested(RunSummarySchema))
    total = fields.Int()


class AcceptedSchema(Schema):
    run_id = fields.Int()
    duplicate = fields.Bool()
