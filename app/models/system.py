from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models._types import utcnow
from app.models.user import User


class SystemKind(StrEnum):
    COMMERCE = "commerce"
    ERP = "erp"
    OMS = "oms"
    WMS = "wms"
    CRM = "crm"
    PIM = "pim"
    LOYALTY = "loyalty"
    MARKETING = "marketing"
    SERVICE = "service"
    OTHER = "other"


class Criticality(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class System(db.Model):
    """An application in the retailer's landscape (inventory entry, node of the map)."""

    __tablename__ = "systems"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20), default=SystemKind.OTHER.value)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    criticality: Mapped[str] = mapped_column(String(20), default=Criticality.MEDIUM.value)
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    owner: Mapped[User | None] = relationship()
