from marshmallow import Schema, fields, validate

from app.schemas.common import StrictSchema, UtcDateTime

ALERT_STATES = ("open", "acknowledged", "resolved", "active")


class AlertQuerySchema(Schema):
    state = fields.Str(load_default=None, validate=validate.OneOf(ALERT_STATES))
    flow = fields.Int(load_default=None)
    limit = fields.Int(load_default=50, validate=validate.Range(min=1, max=500))
    offset = fields.Int(load_default=0, validate=validate.Range(min=0))


class AlertNotificationSchema(Schema):
    channel = fields.Str(metadata={"description": "email, webhook, in_app or grouped"})
    recipient = fields.Str()
    purpose = fields.Str()
    ok = fields.Bool(metadata={"description": "delivered (e-mail and webhook: once sent)"})
    error = fields.Str(allow_none=True, metadata={"description": "the last error, redacted"})
    sent_at = UtcDateTime(metadata={"description": "when it was logged (queued)"})
    status = fields.Str(metadata={"description": "pending (retrying), sent or failed"})
    attempts = fields.Int(allow_none=True, metadata={"description": "outbox attempts so far"})
    next_attempt_at = UtcDateTime(allow_none=True, metadata={"description": "while pending"})
    delivered_at = UtcDateTime(allow_none=True)
    outbox_id = fields.Int(allow_none=True, metadata={"description": "GET /outbox (admins)"})


class AlertSchema(Schema):
    id = fields.Int()
    flow_id = fields.Int()
    flow_name = fields.Str()
    kind = fields.Str()
    state = fields.Str()
    severity = fields.Str()
    summary = fields.Str()
    system = fields.Str(allow_none=True, metadata={"description": "The failing system"})
    error = fields.Str(allow_none=True, metadata={"description": "The last error seen"})
    run_id = fields.Int(allow_none=True, metadata={"description": "A failing run (/runs/<id>)"})
    details = fields.Dict()
    opened_at = UtcDateTime()
    first_failure_at = UtcDateTime(allow_none=True)
    acknowledged_at = UtcDateTime(allow_none=True)
    acknowledged_by = fields.Str(allow_none=True)
    escalated_at = UtcDateTime(allow_none=True)
    resolved_at = UtcDateTime(allow_none=True)
    resolved_by = fields.Str(allow_none=True)
    resolution = fields.Str(allow_none=True)
    mttd_seconds = fields.Float(allow_none=True)
    mttr_seconds = fields.Float(allow_none=True)
    notifications = fields.List(fields.Nested(AlertNotificationSchema))


class AlertListSchema(Schema):
    items = fields.List(fields.Nested(AlertSchema))
    total = fields.Int()


class AlertRuleSchema(Schema):
    kind = fields.Str()
    enabled = fields.Bool()
    params = fields.Dict(keys=fields.Str(), values=fields.Float())
    defaults = fields.Dict(keys=fields.Str(), values=fields.Float())
    overridden = fields.Bool()


class AlertRulesSchema(Schema):
    flow_id = fields.Int()
    has_contract = fields.Bool()
    rules = fields.List(fields.Nested(AlertRuleSchema))


class AlertRuleInputSchema(StrictSchema):
    kind = fields.Str(required=True)
    enabled = fields.Bool(load_default=True)
    params = fields.Dict(keys=fields.Str(), values=fields.Float(), load_default=dict)


class AlertRulesInputSchema(StrictSchema):
    rules = fields.List(fields.Nested(AlertRuleInputSchema), required=True)


class ReliabilitySchema(Schema):
    flow_id = fields.Int()
    days = fields.Int()
    alerts = fields.Int()
    mttd_seconds_avg = fields.Float(allow_none=True)
    mttd_seconds_last = fields.Float(allow_none=True)
    mttr_seconds_avg = fields.Float(allow_none=True)
    mttr_seconds_last = fields.Float(allow_none=True)
    open = fields.List(fields.Nested(AlertSchema))
