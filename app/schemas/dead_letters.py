from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from webargs.fields import DelimitedList

from app.schemas.common import StrictSchema, UtcDateTime
from app.services.dead_letters import MAX_RUNS_PER_REPLAY


class DeadLetterQuerySchema(Schema):
    flow = fields.Int(load_default=None)
    reason = fields.Str(load_default=None, validate=validate.Length(max=500))
    since = fields.DateTime(
        load_default=None, metadata={"description": "dead-lettered at or after"}
    )
    until = fields.DateTime(load_default=None, metadata={"description": "dead-lettered before"})
    limit = fields.Int(load_default=50, validate=validate.Range(min=1, max=500))
    offset = fields.Int(load_default=0, validate=validate.Range(min=0))


class DeadLetterDeliverySchema(Schema):
    step_id = fields.Str()
    idempotency_key = fields.Str()
    status = fields.Str()
    attempts = fields.Int()
    response_code = fields.Int(allow_none=True)
    response_excerpt = fields.Str(metadata={"description": "redacted by the connector"})
    last_error = fields.Str(allow_none=True)
    acknowledged_at = UtcDateTime(allow_none=True)
    updated_at = UtcDateTime(allow_none=True)


class FailedStepSchema(Schema):
    step_id = fields.Str()
    status = fields.Str()
    error = fields.Dict(allow_none=True)
    input = fields.Raw(allow_none=True, metadata={"description": "what the step received"})
    attempt = fields.Int()
    delivery = fields.Nested(DeadLetterDeliverySchema, allow_none=True)


class DeadLetterSchema(Schema):
    id = fields.Int()
    flow_id = fields.Int()
    flow_name = fields.Str()
    flow_version = fields.Int()
    business_key = fields.Str(allow_none=True)
    reason = fields.Str(allow_none=True)
    attempts = fields.Int()
    replays = fields.Int()
    replayed_at = UtcDateTime(allow_none=True)
    received_at = UtcDateTime()
    finished_at = UtcDateTime(allow_none=True)
    failed_steps = fields.List(fields.Nested(FailedStepSchema))
    deliveries = fields.List(fields.Nested(DeadLetterDeliverySchema))


class DeadLetterListSchema(Schema):
    items = fields.List(fields.Nested(DeadLetterSchema))
    total = fields.Int()


class ReplayFilterSchema(StrictSchema):
    flow = fields.Int(load_default=None, allow_none=True)
    reason = fields.Str(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=500)
    )
    since = fields.DateTime(load_default=None, allow_none=True)
    until = fields.DateTime(load_default=None, allow_none=True)


class ReplaySchema(StrictSchema):
    ids = fields.List(
        fields.Int(validate=validate.Range(min=1)),
        validate=validate.Length(min=1, max=MAX_RUNS_PER_REPLAY),
        metadata={"description": f"run ids of dead letters (at most {MAX_RUNS_PER_REPLAY})"},
    )
    filter = fields.Nested(
        ReplayFilterSchema,
        metadata={
            "description": f"dead letters matching it, oldest first, at most "
            f"{MAX_RUNS_PER_REPLAY} per call ('more' says when to call again)"
        },
    )
    version = fields.Str(
        load_default="original",
        validate=validate.OneOf(["original", "live"]),
        metadata={
            "description": "'original': the version the message was received with; "
            "'live': the flow's live version (e.g. after a mapping fix)"
        },
    )
    dry_run = fields.Bool(
        load_default=True, metadata={"description": "preview only (the default): sends nothing"}
    )

    @validates_schema
    def _exactly_one_selector(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("ids" in data) == ("filter" in data):
            raise ValidationError("send exactly one of 'ids' and 'filter'")


class ReplayDestinationSchema(Schema):
    step_id = fields.Str()
    connector = fields.Str(allow_none=True)
    connection_id = fields.Int(allow_none=True)
    connection_name = fields.Str(allow_none=True)
    action = fields.Str(metadata={"description": "sent | skipped (already acknowledged)"})
    previous_status = fields.Str(allow_none=True)
    idempotency_key = fields.Str()
    message = fields.Raw(allow_none=True, metadata={"description": "what would be sent"})


class ReplayRunSchema(Schema):
    run_id = fields.Int()
    flow_id = fields.Int()
    flow_name = fields.Str()
    business_key = fields.Str(allow_none=True)
    previous_version = fields.Int()
    version = fields.Int(metadata={"description": "number of the version used"})
    status = fields.Str(metadata={"description": "after the replay: queued"})
    outcome = fields.Str(metadata={"description": "dry run: the simulated outcome"})
    reason = fields.Str(allow_none=True)
    destinations = fields.List(fields.Nested(ReplayDestinationSchema))


class NotReplayableSchema(Schema):
    id = fields.Int()
    reason = fields.Str()


class ReplayResultSchema(Schema):
    dry_run = fields.Bool()
    version = fields.Str()
    batch = fields.Str(allow_none=True)
    matched = fields.Int()
    more = fields.Bool(metadata={"description": "more dead letters match the filter"})
    replayable = fields.Int()
    replayed = fields.Int()
    runs = fields.List(fields.Nested(ReplayRunSchema))
    not_replayable = fields.List(fields.Nested(NotReplayableSchema))


class ReplayStatusQuerySchema(Schema):
    ids = DelimitedList(
        fields.Int(validate=validate.Range(min=1)),
        required=True,
        validate=validate.Length(min=1, max=MAX_RUNS_PER_REPLAY),
    )


class ReplayStatusRunSchema(Schema):
    id = fields.Int()
    status = fields.Str()
    reason = fields.Str(allow_none=True)
    replays = fields.Int()
    finished_at = UtcDateTime(allow_none=True)


class ReplayStatusSchema(Schema):
    total = fields.Int()
    counts = fields.Dict(keys=fields.Str(), values=fields.Int())
    done = fields.Bool()
    runs = fields.List(fields.Nested(ReplayStatusRunSchema))
    missing = fields.List(fields.Int())
