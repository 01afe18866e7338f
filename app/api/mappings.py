from __future__ import annotations

import time
from typing import Any

from app import runtime
from app.api import protected_blueprint
from app.errors import Invalid
from app.schemas.common import ProblemSchema
from app.schemas.mappings import PreviewResultSchema, PreviewSchema
from flows import mapping

bp = protected_blueprint("mappings", __name__, "JSONata preview (the worker's own evaluator)")


@bp.post("/mappings/preview")
@bp.arguments(PreviewSchema)
@bp.response(200, PreviewResultSchema)
@bp.alt_response(422, schema=ProblemSchema, description="Expression error with code and position")
def preview_mapping(data: dict[str, Any]) -> dict[str, Any]:
    """Evaluate an expression on sample input exactly as the worker would (same sandbox
    and limits: a hostile expression is stopped with ``resource_limit``)."""
    started = time.perf_counter()
    try:
        output = runtime.mapping_evaluator().evaluate(data["expression"], data["input"])
    except mapping.MappingError as exc:
        raise Invalid(exc.message, error=exc.to_dict()) from exc
    return {"output": output, "duration_ms": round((time.perf_counter() - started) * 1000, 3)}
