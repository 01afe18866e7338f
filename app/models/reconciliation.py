"""Reconciliation reports: per flow and day, what came in against what went out."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
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
    """An external check: ask a source or destination system for its ids (or count) of the day.

    ``kind`` says how: ``http`` GETs ``path`` with ``query`` through the connection (auth,
    egress guard; ``{day}`` in a value becomes the ISO date); ``sql`` runs the read-only
    SELECT ``sql`` on a SQL connection with the day's bounds as named parameters (``:day``,
    ``:day_start``, ``:day_end``). The JSONata ``ids_expression`` is evaluated on the JSON
    answer (HTTP) or on the rows as a list of objects (SQL) and gives the business keys
    (``mode`` ``ids``) or one number (``mode`` ``count``: compared as counts, no ids listed).
    ``step_id`` names the deliver step a destination check covers (a forced re-send of a
    missing id goes there); None: found from the connection's system.
    """

    __tablename__ = "reconciliation_checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    flow_id: Mapped[int] = mapped_column(ForeignKey("flows.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    side: Mapped[str] = mapped_column(String(20))  # source | destination
    kind: Mapped[str] = mapped_column(String(10), default="http", server_default="http")
    mode: Mapped[str] = mapped_column(String(10), default="ids", server_default="ids")
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(2048), default="/")
    query: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    sql: Mapped[str | None] = mapped_column(Text)
    ids_expression: Mapped[str] = mapped_column(String(2000))
    step_id: Mapped[str | None] = mapped_column(String(64))
    tolerance: Mapped[int] = mapped_column(default=0)
    enabled: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
