"""The notification outbox: every e-mail and webhook waits here until it is delivered.

A row is added in the same transaction as the change it tells about (an alert opening, a
review decision) and sent by ``app.services.outbox`` with retries; in-app notifications are
plain ``Notification`` rows and never pass through here.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models._types import JSONType, utcnow

if TYPE_CHECKING:
    from app.models.alert import Alert
    from app.models.flow import FlowVersion


class OutboxStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (also while a sender holds it)
    SENT = "sent"
    FAILED = "failed"  # gave up: shown to admins, who can retry it


class OutboxMessage(db.Model):
    __tablename__ = "notification_outbox"
    __table_args__ = (
        # The sender's only query: due pending rows, oldest first.
        Index("ix_notification_outbox_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))  # email | webhook
    # E-mail addresses, or a webhook as scheme://host/… (its path and query are secrets).
    recipient: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(300), default="")
    # email: {"to": [...], "body": "..."}; webhook: {"json": {...}}
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # The webhook URL, Fernet-encrypted (app.crypto); "" for e-mail. Never leaves the sender.
    target_encrypted: Mapped[str] = mapped_column(Text, default="")
    purpose: Mapped[str] = mapped_column(String(64))  # alert.opened, review.approved, ...
    alert_id: Mapped[int | None] = mapped_column(
        ForeignKey("alerts.id", ondelete="SET NULL"), index=True
    )
    flow_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("flow_versions.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[str] = mapped_column(String(20), default=OutboxStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)  # redacted before it is stored
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]

    alert: Mapped[Alert | None] = relationship()
    version: Mapped[FlowVersion | None] = relationship()
