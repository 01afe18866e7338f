from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from app.api import protected_blueprint
from app.errors import NotFound
from app.schemas.common import ProblemSchema
from flows import canonical
from flows.definition import load_flow_schema

bp = protected_blueprint("schemas", __name__, "JSON Schemas of the documents Flowgate stores")


class CanonicalSchemaInfoSchema(Schema):
    name = fields.Str()
    version = fields.Int()
    title = fields.Str()
    description = fields.Str()


class CanonicalSchemaListSchema(Schema):
    items = fields.List(fields.Nested(CanonicalSchemaInfoSchema))


class CanonicalSchemaQuerySchema(Schema):
    version = fields.Int(load_default=None, validate=validate.Range(min=1))


@bp.get("/schemas/flow")
@bp.response(200)
def get_flow_schema() -> dict[str, Any]:
    """The JSON Schema a flow definition must satisfy."""
    return load_flow_schema()


@bp.get("/schemas")
@bp.response(200, CanonicalSchemaListSchema)
def list_canonical_schemas() -> dict[str, Any]:
    """The canonical retail model: every shipped schema version (name, version, title).

    A deliver step may declare one as its ``input_schema``.
    """
    return {"items": [info.to_dict() for info in canonical.list_schemas()]}


@bp.get("/schemas/<name>")
@bp.arguments(CanonicalSchemaQuerySchema, location="query")
@bp.response(200)
@bp.alt_response(404, schema=ProblemSchema)
def get_canonical_schema(args: dict[str, Any], name: str) -> dict[str, Any]:
    """One canonical JSON Schema (draft 2020-12), e.g. ``order``; the latest version unless
    ``?version=`` is given."""
    try:
        return canonical.load(name, args["version"])
    except canonical.UnknownSchema as exc:
        raise NotFound(str(exc)) from None
