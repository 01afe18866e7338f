from marshmallow import Schema, fields, validate

from app.schemas.common import StrictSchema, UserRefSchema, UtcDateTime


class FlowCreateSchema(StrictSchema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    description = fields.Str(load_default="", validate=validate.Length(max=5000))
    owner_id = fields.Int(load_default=None, allow_none=True)


class ReviewSchema(Schema):
    id = fields.Int()
    decision = fields.Str()
    comment = fields.Str()
    reviewer = fields.Nested(UserRefSchema, allow_none=True)
    created_at = UtcDateTime()


class FlowVersionSchema(Schema):
    id = fields.Int()
    number = fields.Int()
    status = fields.Str()
    revision = fields.Int()
    content_hash = fields.Str()
    definition = fields.Dict()
    contract = fields.Dict(allow_none=True, metadata={"description": "the integration contract"})
    author = fields.Nested(UserRefSchema, allow_none=True)
    contributor_ids = fields.List(
        fields.Int(), metadata={"description": "everyone who shaped it: none may approve it"}
    )
    approved_by = fields.Nested(UserRefSchema, allow_none=True)
    created_at = UtcDateTime()
    updated_at = UtcDateTime()
    submitted_at = UtcDateTime(allow_none=True)
    decided_at = UtcDateTime(allow_none=True)
    live_since = UtcDateTime(allow_none=True)
    reviews = fields.List(fields.Nested(ReviewSchema))


class FlowVersionSummarySchema(Schema):
    number = fields.Int()
    status = fields.Str()
    revision = fields.Int()
    created_at = UtcDateTime()


class LastRunSchema(Schema):
    id = fields.Int()
    status = fields.Str()
    received_at = UtcDateTime()


class FlowSchema(Schema):
    id = fields.Int()
    name = fields.Str()
    slug = fields.Str()
    description = fields.Str()
    owner = fields.Nested(UserRefSchema, allow_none=True)
    live_version = fields.Int(allow_none=True)
    draft_version = fields.Int(allow_none=True)
    draft_revision = fields.Int(allow_none=True)
    webhook_path = fields.Str(allow_none=True)
    last_run = fields.Nested(
        LastRunSchema, allow_none=True, metadata={"description": "the flow's most recent run"}
    )
    versions = fields.List(fields.Nested(FlowVersionSummarySchema))
    created_at = UtcDateTime()


class FlowListSchema(Schema):
    items = fields.List(fields.Nested(FlowSchema))
    total = fields.Int()


class FlowQuerySchema(Schema):
    q = fields.Str(load_default=None)


class DraftSaveSchema(StrictSchema):
    definition = fields.Dict(required=True)
    revision = fields.Int(load_default=None, allow_none=True)
    contract = fields.Dict(
        allow_none=True,
        metadata={
            "description": "the integration contract (flows/contract.schema.json); optional"
            " while drafting, only the types are checked; leave it out to keep the stored one"
        },
    )


class SubmitSchema(StrictSchema):
    contract = fields.Dict(
        allow_none=True,
        metadata={"description": "stored on the draft before submitting; it must be complete"},
    )


class LayoutSaveSchema(StrictSchema):
    layout = fields.Dict(
        required=True, metadata={"description": "step id -> {x, y}; any version, no review"}
    )


class ContractSaveSchema(StrictSchema):
    contract = fields.Dict(required=True, allow_none=True)


class DefinitionCheckSchema(StrictSchema):
    definition = fields.Dict(required=True)


class DefinitionProblemsSchema(Schema):
    problems = fields.List(fields.Dict(), metadata={"description": "as in DraftSaved"})


class DraftSaveQuerySchema(Schema):
    allow_problems = fields.Bool(
        load_default=False,
        metadata={
            "description": "store an incomplete draft (editor autosave) and return its problems"
            " instead of refusing it with 422; submitting stays refused until they are fixed"
        },
    )


class DraftSavedSchema(Schema):
    version = fields.Int()
    revision = fields.Int()
    content_hash = fields.Str()
    problems = fields.List(
        fields.Dict(),
        metadata={
            "description": "path (JSON pointer), code, message, position; step: the step id"
            " ('trigger' for the trigger) and edge: the edge index, when the path points there"
        },
    )


class DecisionSchema(StrictSchema):
    comment = fields.Str(load_default="", validate=validate.Length(max=10000))


class RollbackSchema(StrictSchema):
    comment = fields.Str(
        load_default="",
        validate=validate.Length(max=10000),
        metadata={"description": "why (kept in the audit log)"},
    )


class RollbackResultSchema(Schema):
    flow_id = fields.Int()
    from_version = fields.Int(allow_none=True, metadata={"description": "retired by the rollback"})
    to_version = fields.Int(metadata={"description": "live again"})
    version = fields.Nested(FlowVersionSchema, metadata={"description": "the live version"})


class GuardrailSchema(Schema):
    id = fields.Str(
        metadata={
            "description": "owner, retry_policy, egress, samples, filter_drops_everything,"
            " expensive_expression or sample_tests"
        }
    )
    status = fields.Str(metadata={"description": "pass, warn or fail; a fail blocks approval"})
    message = fields.Str()
    step = fields.Str(allow_none=True, metadata={"description": "the step it is about, if any"})


class SampleTestResultSchema(Schema):
    name = fields.Str()
    step = fields.Str()
    status = fields.Str(metadata={"description": "pass or fail"})
    expected = fields.Raw(allow_none=True)
    actual = fields.Raw(allow_none=True)
    error = fields.Dict(allow_none=True, metadata={"description": "code, message, position"})


class DryRunStepSchema(Schema):
    step_id = fields.Str()
    status = fields.Str()
    output = fields.Raw(allow_none=True)
    error = fields.Dict(allow_none=True)
    duration_ms = fields.Float()


class DryRunDestinationSchema(Schema):
    step_id = fields.Str()
    connector = fields.Str(allow_none=True)
    connection_id = fields.Int(allow_none=True)
    config = fields.Dict()
    message = fields.Raw(
        allow_none=True, metadata={"description": "what the destination would receive"}
    )


class DryRunSchema(Schema):
    sample = fields.Int(metadata={"description": "index in the definition's samples"})
    status = fields.Str()
    reason = fields.Str(allow_none=True)
    steps = fields.List(fields.Nested(DryRunStepSchema))
    destinations = fields.List(fields.Nested(DryRunDestinationSchema))


class DestinationIdempotencySchema(Schema):
    step = fields.Str(metadata={"description": "the deliver step's id"})
    connector = fields.Str()
    idempotency = fields.Str(
        metadata={"description": "effective: key, upsert or none (sql insert mode: none)"}
    )
    label = fields.Str(
        metadata={"description": '"by key", "by upsert on <natural key>", "none"...'}
    )
    max_attempts = fields.Int(metadata={"description": "of the step's retry policy"})


class VersionReviewSchema(Schema):
    version = fields.Nested(FlowVersionSchema)
    diff_against = fields.Int(
        allow_none=True, metadata={"description": "the live version compared with, if any"}
    )
    diff = fields.Dict(
        metadata={
            "description": "semantic diff: trigger, steps added/removed/changed (per field,"
            " with a unified text diff of expressions), edges, tests; layout and samples are"
            " never changes"
        }
    )
    approvable = fields.Bool(metadata={"description": "no guardrail fails"})
    contract = fields.Dict(allow_none=True)
    contract_diff = fields.Dict(
        metadata={
            "description": "against the live version's contract: changes (dotted path, old,"
            " new) and fields added/removed/changed"
        }
    )
    contract_problems = fields.List(
        fields.Dict(), metadata={"description": "what keeps the contract from being complete"}
    )
    comments = fields.List(fields.Nested("CommentSchema"))
    guardrails = fields.List(fields.Nested(GuardrailSchema))
    blocking = fields.List(fields.Nested(GuardrailSchema))
    sample_tests = fields.List(fields.Nested(SampleTestResultSchema))
    dry_run = fields.List(
        fields.Nested(DryRunSchema),
        metadata={"description": "the whole flow on each sample, destinations simulated"},
    )
    idempotency = fields.List(
        fields.Nested(DestinationIdempotencySchema),
        metadata={"description": "how each destination avoids duplicates on a retry"},
    )


class CommentSchema(Schema):
    id = fields.Int()
    body = fields.Str()
    author = fields.Nested(UserRefSchema, allow_none=True)
    created_at = UtcDateTime()


class CommentCreateSchema(StrictSchema):
    body = fields.Str(required=True, validate=validate.Length(min=1, max=10000))


class CommentListSchema(Schema):
    items = fields.List(fields.Nested(CommentSchema))
