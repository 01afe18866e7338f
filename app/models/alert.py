"""Alerts: rules per flow, the alerts they open, and every notification sent for them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models._types import JSONType, utcnow
from app.models.flow import Flow
from app.models.outbox import OutboxMessage
from app.models.user import User


class AlertState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlertRule(db.Model):
    """A per-flow override of one rule kind (defaults come from the live contract)."""

    __tablename__ = "alert_rules"
    __table_args__ = (UniqueConstraint("flow_id", "kind", name="uq_alert_rules_flow_kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    flow_id: Mapped[int] = mapped_column(ForeignKey("flows.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    enabled: Mapped[bool] = mapped_column(default=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Alert(db.Model):
    """One incident of one rule on one flow: open → acknowledged → resolved."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_flow_kind_state", "flow_id", "kind", "state"),
        Index("ix_alerts_state_opened", "state", "opened_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    flow_id: Mapped[int] = mapped_column(ForeignKey("flows.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(20), default=AlertState.OPEN.value)
    severity: Mapped[str] = mapped_column(String(20), default="warning")
    summary: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    system_name: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    # MTTD = opened_at - first_failure_at; MTTR = resolved_at - opened_at.
    first_failure_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    escalated_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    resolution: Mapped[str | None] = mapped_column(String(20))  # auto | manual

    flow: Mapped[Flow] = relationship()
    acknowledged_by: Mapped[User | None] = relationship(foreign_keys=[acknowledged_by_id])
    resolved_by: Mapped[User | None] = relationship(foreign_keys=[resolved_by_id])
    notifications: Mapped[list[AlertNotification]] = relationship(
        back_populates="alert", order_by="AlertNotification.id", cascade="all, delete-orphan"
    )


class AlertNotification(db.Model):
    """One message for an alert: channel, recipient, outcome. E-mails and webhooks go
    through the outbox (``outbox``): their outcome (status, attempts, last error) is the
    outbox row's; ``ok``/``error`` hold the outcome of in-app and unsendable ones."""

    __tablename__ = "alert_notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(20))  # email | webhook | in_app
    recipient: Mapped[str] = mapped_column(String(500))
    purpose: Mapped[str] = mapped_column(String(20))  # opened | escalated | resolved
    ok: Mapped[bool] = mapped_column(default=True)
    error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)  # when it was logged (queued)
    outbox_id: Mapped[int | None] = mapped_column(
        ForeignKey("notification_outbox.id", ondelete="SET NULL"), index=True
    )

    alert: Mapped[Alert] = relationship(back_populates="notifications")
    outbox: Mapped[OutboxMessage | None] = relationship(lazy="joined")
