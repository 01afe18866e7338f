from marshmallow import Schema, fields

from app.schemas.common import UtcDateTime


class ScheduleStateSchema(Schema):
    cron = fields.Str(allow_none=True)
    timezone = fields.Str()
    next_tick = UtcDateTime(allow_none=True, metadata={"description": "null unless live"})
    last_fired = UtcDateTime(allow_none=True, metadata={"description": "the newest tick fired"})
    paused_reason = fields.Str(
        allow_none=True, metadata={"description": "why the last due tick was not fired"}
    )
    paused_at = UtcDateTime(allow_none=True)


class PollStateSchema(Schema):
    interval_seconds = fields.Int(allow_none=True)
    cursor = fields.Str(
        allow_none=True,
        metadata={
            "description": "a short summary of the cursor's shape and a fingerprint;"
            " never its value"
        },
    )
    polls = fields.Int(metadata={"description": "polls completed"})
    fired = fields.Int(metadata={"description": "runs recorded by polls"})
    last_polled_at = UtcDateTime(allow_none=True)
    next_poll_at = UtcDateTime(allow_none=True)
    last_error = fields.Str(allow_none=True)
    paused_reason = fields.Str(allow_none=True)
    paused_at = UtcDateTime(allow_none=True)


class WebhookStateSchema(Schema):
    url = fields.Str(metadata={"description": "where to POST events"})
    accepting = fields.Bool(metadata={"description": "a live version answers at the URL"})


class TriggerStateSchema(Schema):
    flow_id = fields.Int()
    type = fields.Str(allow_none=True, metadata={"description": "the trigger connector key"})
    version = fields.Int(allow_none=True, metadata={"description": "the version it is from"})
    live = fields.Bool(metadata={"description": "false: no live version, the newest is shown"})
    schedule = fields.Nested(ScheduleStateSchema, allow_none=True)
    poll = fields.Nested(PollStateSchema, allow_none=True)
    webhook = fields.Nested(WebhookStateSchema, allow_none=True)
