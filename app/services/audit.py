from __future__ import annotations

from typing import Any

from app.extensions import db
from app.models import AuditEvent, User


def record(
    actor: User | None, action: str, object_type: str, object_id: Any, **detail: Any
) -> None:
    """Add an audit event to the current transaction (committed with the change it records)."""
    db.session.add(
        AuditEvent(
            actor_id=actor.id if actor is not None else None,
            actor_label=actor.email if actor is not None else "system",
            action=action,
            object_type=object_type,
            object_id=None if object_id is None else str(object_id),
            detail=detail,
        )
    )
