"""Schemas of the editor's helpers: test run of a draft, sample payloads, captured payloads;
and the masking of credentials in message data that every such response goes through."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.schemas.common import StrictSchema, UtcDateTime
from connectors.redaction import MASK

# Keys whose values are credentials wherever they appear in a message.
SECRET_KEY = re.compile(
    r"(pass(word|wd)?|secret|token|api[-_]?key|apikey|authorization|credential|private[-_]?key"
    r"|access[-_]?key|signature)",
    re.IGNORECASE,
)


def redact(value: Any, redactor: Callable[[str], str] | None = None) -> Any:
    """A copy of ``value`` with the values of credential-named keys masked and, with a
    ``redactor`` (``connectors.redaction.Redactor``), every known secret value masked too."""
    if isinstance(value, dict):
        return {
            k: (MASK if _is_secret_key(k, v) else redact(v, redactor)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v, redactor) for v in value]
    if isinstance(value, str) and redactor is not None:
        return redactor(value)
    return value


def _is_secret_key(key: Any, value: Any) -> bool:
    # Only scalar values are masked whole: {"token": {...}} keeps its structure, redacted.
    return (
        isinstance(key, str)
        and SECRET_KEY.search(key) is not None
        and isinstance(value, (str, int, float))
        and not isinstance(value, bool)
        and value != ""
    )


class Redacted(fields.Raw):
    """Message data (payloads, step input and output) with credential-named fields masked."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return redact(value)


class TestRunSchema(StrictSchema):
    definition = fields.Dict(
        load_default=None,
        allow_none=True,
        metadata={"description": "The draft to run (need not be saved); else the saved draft"},
    )
    sample = fields.Raw(
        load_default=None, allow_none=True, metadata={"description": "The message to run"}
    )
    sample_index = fields.Int(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0),
        metadata={"description": "Or: which of the definition's ``samples`` to run"},
    )

    @validates_schema
    def _one_sample(self, data: dict, **_: object) -> None:
        if data.get("sample") is not None and data.get("sample_index") is not None:
            raise ValidationError("give either sample or sample_index, not both", "sample_index")


class TestRunErrorSchema(Schema):
    code = fields.Str()
    message = fields.Str()
    position = fields.Int(allow_none=True)
    line = fields.Int(allow_none=True)
    column = fields.Int(allow_none=True)


class TestRunStepSchema(Schema):
    id = fields.Str()
    type = fields.Str(allow_none=True)
    status = fields.Str(metadata={"description": "succeeded | failed | filtered | skipped"})
    input = fields.Raw(allow_none=True)
    output = fields.Raw(allow_none=True)
    duration_ms = fields.Float()
    error = fields.Dict(allow_none=True)


class TestRunDeliverySchema(Schema):
    step = fields.Str()
    connector = fields.Str(allow_none=True)
    connection_id = fields.Int(allow_none=True)
    connection = fields.Str(allow_none=True, metadata={"description": "The connection's name"})
    target = fields.Str(allow_none=True, metadata={"description": "e.g. POST <base_url>/orders"})
    would_send = fields.Raw(allow_none=True)


class TestRunResultSchema(Schema):
    ok = fields.Bool()
    status = fields.Str(metadata={"description": "What a real run would end as"})
    reason = fields.Str(allow_none=True)
    duration_ms = fields.Float()
    steps = fields.List(fields.Nested(TestRunStepSchema))
    deliveries = fields.List(fields.Nested(TestRunDeliverySchema))


class SampleInfoSchema(Schema):
    name = fields.Str()
    title = fields.Str()
    business_object = fields.Str()
    size_bytes = fields.Int()


class SampleListSchema(Schema):
    items = fields.List(fields.Nested(SampleInfoSchema))


class SampleSchema(SampleInfoSchema):
    payload = fields.Raw()


class RecentPayloadQuerySchema(Schema):
    limit = fields.Int(load_default=10, validate=validate.Range(min=1, max=50))


class RecentPayloadSchema(Schema):
    run_id = fields.Int()
    status = fields.Str()
    business_key = fields.Str(allow_none=True)
    received_at = UtcDateTime()
    flow_version = fields.Int()
    payload = fields.Raw(allow_none=True)


class RecentPayloadListSchema(Schema):
    items = fields.List(fields.Nested(RecentPayloadSchema))
