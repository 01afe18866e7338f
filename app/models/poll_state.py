"""Per-flow state of a non-request trigger: a poll's cursor, and why firing is paused."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models._types import JSONType, utcnow


class PollState(db.Model):
    """One row per flow whose live trigger is fired by the scheduler (poll or schedule).

    ``cursor`` is the position a poll resumes from; it is written only after the runs of the
    page it follows are committed, so a crash in between re-reads the page and the runs'
    unique event ids turn the repeats into duplicates. ``claimed_until`` is the lock that
    keeps two schedulers from polling the same flow at once (a conditional UPDATE).
    """

    __tablename__ = "poll_states"

    id: Mapped[int] = mapped_column(primary_key=True)
    flow_id: Mapped[int] = mapped_column(
        ForeignKey("flows.id", ondelete="CASCADE"), unique=True, index=True
    )
    trigger_type: Mapped[str] = mapped_column(String(64))
    # Hash of the trigger config that defines the source: a new source starts afresh.
    fingerprint: Mapped[str] = mapped_column(String(64), default="")
    cursor: Mapped[Any] = mapped_column(JSONType, nullable=True)
    # Ids already handled on the page at ``cursor`` (seeded items, a re-read last page).
    seen_ids: Mapped[Any] = mapped_column(JSONType, nullable=True)
    # Polls that completed (a failed one does not count: a failed first poll seeds next time).
    polls: Mapped[int] = mapped_column(default=0, server_default="0")
    fired: Mapped[int] = mapped_column(default=0, server_default="0")
    next_poll_at: Mapped[datetime | None]
    claimed_until: Mapped[datetime | None]
    last_polled_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # Back-pressure: why firing was skipped last (None once it fires again), and when.
    paused_reason: Mapped[str | None] = mapped_column(Text)
    paused_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
