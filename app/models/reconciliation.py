"""Reconciliation reports: per flow and day, what came in against what went out."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models._types import JSONType, utcnow


class ReconciliationReport(db.Model):
    __tablename__ = "reconciliation_reports"
    __table_args__ = (Index("ix_reconciliation_flow_day", "flow_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    flow_id: Mapped[int] = mapped_column(ForeignKey("flows.id", ondelete="CASCADE"))
    day: Mapped[date]
    trigger: Mapped[str] = mapped_column(String(20))  # scheduled | on_demand
    ok: Mapped[bool] = mapped_column(default=True)
    differences: Mapped[int] = mapped_column(default=0)
    # {"totals": {...}, "destinations": [...], "differences": [...], "external": [...]}
    result: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class ReconciliationCheck(db.Model):
    """An external check: ask a source or destination system for its ids of the day.

    HTTP only for now: a GET through a connection (auth, egress guard) at ``path`` with
    ``query`` (``{day}`` in a value is replaced by the ISO date), and a JSONata expression
    ``ids`` evaluated on the JSON answer giving the list of business keys.
    """

    __tablename__ = "reconciliation_checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    flow_id: Mapped[int] = mapped_column(ForeignKey("flows.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    side: Mapped[str] = mapped_column(String(20))  # source | destination
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(2048), default="/")
    query: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    ids_expression: Mapped[str] = mapped_column(String(2000))
    tolerance: Mapped[int] = mapped_column(default=0)
    enabled: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
