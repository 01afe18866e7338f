from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models._types import JSONType, utcnow


class DemoOmsOrder(db.Model):
    """What the built-in demo OMS received; it honours Idempotency-Key like a real API."""

    __tablename__ = "demo_oms_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    body: Mapped[Any] = mapped_column(JSONType)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # How many requests carried this key (1 = one effect, no retries seen).
    requests_seen: Mapped[int] = mapped_column(default=1)
