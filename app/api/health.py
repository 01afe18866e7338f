from __future__ import annotations

from typing import Any

from flask import current_app
from flask_smorest import Blueprint
from sqlalchemy import text

from app.extensions import db
from app.redis_conn import eviction_policy_problem, get_redis

bp = Blueprint("health", __name__, description="Liveness of web, database and Redis")


@bp.get("/healthz")
@bp.response(200)
@bp.alt_response(503, description="Database or Redis unreachable")
@bp.doc(security=[])
def healthz() -> tuple[dict[str, Any], int]:
    """200 when the database and Redis answer; 503 naming what does not. ``warnings`` lists
    settings that are unsafe but not down (a Redis that may evict keys)."""
    checks: dict[str, str] = {"web": "ok"}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure here is the answer, not an error
        db.session.rollback()
        checks["database"] = f"error: {exc.__class__.__name__}"
    warnings: list[str] = []
    try:
        client = get_redis(current_app)
        client.ping()
        checks["redis"] = "ok"
        # Said, not failed: a load balancer must not take the web tier out for a setting.
        if problem := eviction_policy_problem(client):
            warnings.append(problem)
    except Exception as exc:
        checks["redis"] = f"error: {exc.__class__.__name__}"
    healthy = all(v == "ok" for v in checks.values())
    body = {"status": "ok" if healthy else "degraded", "checks": checks, "warnings": warnings}
    return body, 200 if healthy else 503
