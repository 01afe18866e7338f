"""Reconciliation: reports, external checks (HTTP or SQL) and the one-action replay."""

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.schemas.common import StrictSchema, UtcDateTime
from app.schemas.dead_letters import ReplayResultSchema


class ReconcileInputSchema(StrictSchema):
    day = fields.Date(load_default=None)


class ReportQuerySchema(Schema):
    day = fields.Date(load_default=None)
    limit = fields.Int(load_default=20, validate=validate.Range(min=1, max=200))


class ReportSchema(Schema):
    id = fields.Int()
    flow_id = fields.Int()
    day = fields.Date()
    trigger = fields.Str()
    ok = fields.Bool()
    differences = fields.Int()
    result = fields.Dict(
        metadata={
            "description": "totals, destinations, differences (by business key) and external "
            "(one entry per check: ids mode lists missing/unexpected ids; count mode compares "
            "counts, ids_listed false)"
        }
    )
    created_at = UtcDateTime()


class ReportListSchema(Schema):
    items = fields.List(fields.Nested(ReportSchema))


class ReconciliationCheckSchema(StrictSchema):
    id = fields.Int(dump_only=True)
    name = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    side = fields.Str(required=True, validate=validate.OneOf(("source", "destination")))
    kind = fields.Str(
        load_default="http",
        validate=validate.OneOf(("http", "sql")),
        metadata={"description": "http: GET through an HTTP connection; sql: one SELECT"},
    )
    mode = fields.Str(
        load_default="ids",
        validate=validate.OneOf(("ids", "count")),
        metadata={"description": "ids: the expression gives the id list; count: one number"},
    )
    connection_id = fields.Int(required=True)
    path = fields.Str(load_default="/", validate=validate.Regexp(r"^/[^\s]*$"))
    query = fields.Dict(keys=fields.Str(), values=fields.Raw(), load_default=dict)
    sql = fields.Str(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, max=20_000),
        metadata={
            "description": "sql checks: one read-only SELECT; parameters :day, :day_start, "
            ":day_end (the flow's local day, bounds in UTC)"
        },
    )
    ids_expression = fields.Str(
        required=True,
        validate=validate.Length(min=1, max=2000),
        metadata={"description": "JSONata on the JSON answer (http) or on the rows (sql)"},
    )
    step_id = fields.Str(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "destination checks: the deliver step a re-send goes to"},
    )
    tolerance = fields.Int(load_default=0, validate=validate.Range(min=0))
    enabled = fields.Bool(load_default=True)

    @validates_schema
    def _kind_fields(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("kind", "http") == "sql" and not data.get("sql"):
            raise ValidationError("a sql check needs its SELECT", "sql")
        if data.get("kind", "http") == "http" and data.get("sql"):
            raise ValidationError("only a sql check has SQL", "sql")


class ReconciliationChecksSchema(StrictSchema):
    checks = fields.List(fields.Nested(ReconciliationCheckSchema), required=True)


class ResentRunSchema(Schema):
    run_id = fields.Int()
    business_key = fields.Str(allow_none=True)
    step_ids = fields.List(fields.Str())
    status = fields.Str()


class ReconciliationReplaySchema(ReplayResultSchema):
    resent = fields.Int(
        metadata={"description": "acknowledged deliveries sent again (missing at the destination)"}
    )
    resent_runs = fields.List(fields.Nested(ResentRunSchema))
