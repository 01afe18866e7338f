from __future__ import annotations

from typing import Any

from app.api import protected_blueprint
from flows.definition import load_flow_schema

bp = protected_blueprint("schemas", __name__, "JSON Schemas of the documents Flowgate stores")


@bp.get("/schemas/flow")
@bp.response(200)
def get_flow_schema() -> dict[str, Any]:
    """The JSON Schema a flow definition must satisfy."""
    return load_flow_schema()
