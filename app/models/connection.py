from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models._types import JSONType, utcnow
from app.models.system import System


class Connection(db.Model):
    """Where a connector talks to: non-secret config in clear, secrets Fernet-encrypted."""

    __tablename__ = "connections"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    connector_key: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Fernet token of a JSON object {field: value}; decrypted only by app.crypto.
    secrets_encrypted: Mapped[str] = mapped_column(Text, default="")
    # Shared by all workers (app.gates): None means no limit.
    rate_limit_per_second: Mapped[float | None]
    max_in_flight: Mapped[int | None]
    system_id: Mapped[int | None] = mapped_column(ForeignKey("systems.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    system: Mapped[System | None] = relationship()
