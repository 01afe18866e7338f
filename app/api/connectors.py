from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from app import runtime
from app.api import protected_blueprint
from app.errors import NotFound
from connectors.base import ConnectorError

bp = protected_blueprint("connectors", __name__, "The connector catalogue (drives editor forms)")


class ConnectorSpecSchema(Schema):
    key = fields.Str()
    name = fields.Str()
    kind = fields.Str()
    version = fields.Int()
    description = fields.Str()
    connection_schema = fields.Dict()
    secret_fields = fields.List(fields.Str())
    step_schema = fields.Dict()
    requires_connection = fields.Bool()
    idempotency = fields.Str()


class ConnectorListSchema(Schema):
    items = fields.List(fields.Nested(ConnectorSpecSchema))


@bp.get("/connectors")
@bp.response(200, ConnectorListSchema)
def list_connectors() -> dict[str, Any]:
    """Every connector's spec: config schemas, secret fields, idempotency. No code."""
    return {"items": [spec.to_dict() for spec in runtime.registry().specs()]}


@bp.get("/connectors/<key>")
@bp.response(200, ConnectorSpecSchema)
def get_connector(key: str) -> dict[str, Any]:
    try:
        return runtime.registry().spec(key).to_dict()
    except ConnectorError as exc:
        raise NotFound(str(exc)) from exc
