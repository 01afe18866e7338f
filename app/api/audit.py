from __future__ import annotations

from typing import Any

from app.api import protected_blueprint
from app.auth import require_role
from app.models import Role
from app.schemas.audit import AuditListSchema, AuditQuerySchema, AuditVerifySchema
from app.schemas.common import ProblemSchema
from app.services import audit as service

bp = protected_blueprint("audit", __name__, "The hash-chained audit log (owners and admins)")

READERS = (Role.OWNER.value, Role.ADMIN.value)


@bp.get("/audit")
@require_role(*READERS)
@bp.arguments(AuditQuerySchema, location="query")
@bp.response(200, AuditListSchema)
@bp.alt_response(403, schema=ProblemSchema, description="Not an owner or admin")
def list_audit_events(args: dict[str, Any]) -> dict[str, Any]:
    """Audit events, newest first, filtered by ``action``, ``actor`` (user id or label),
    ``object_type``, ``object_id`` and ``since`` (inclusive) / ``until`` (exclusive)."""
    items, total = service.list_events(**args)
    return {"items": items, "total": total}


@bp.get("/audit/verify")
@require_role(*READERS)
@bp.response(200, AuditVerifySchema)
@bp.alt_response(403, schema=ProblemSchema, description="Not an owner or admin")
def verify_audit_chain() -> dict[str, Any]:
    """Walk the hash chain in id order: ``ok``, how many events were ``checked``, and the id
    of the first broken link (an edited, removed or inserted row), if any."""
    return service.verify_chain().to_dict()
