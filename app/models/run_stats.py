"""Pre-aggregated run statistics: what the dashboards read instead of millions of runs.

``run_stats`` holds one row per flow per minute (``grain`` 60) and per hour (``grain`` 3600)
with activity: runs received in it (by ``received_at``), runs that reached each final status
in it (by ``finished_at``), a latency histogram of the runs that succeeded in it and the
latest success. Hour rows are the sums of their minute rows, written in the same
transaction. ``run_stats_watermarks`` says up to where (exclusive) the rows are complete;
app.services.rollup writes both, app.services.dashboard reads them plus the runs after the
watermark.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models._types import JSONType

MINUTE = 60
HOUR = 3600
# End-to-end latency histogram bounds in seconds (upper bounds; one more bucket above the
# last). Stored histograms are counts per bound, so changing these needs a migration that
# rebuilds run_stats (or a backfill of the history that is still in ``runs``).
LATENCY_BOUNDS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600, 21600, 86400,
)  # fmt: skip


class RunStats(db.Model):
    """Counts of one flow's runs in one time bucket (only buckets with activity exist)."""

    __tablename__ = "run_stats"

    # Time first: the dashboard reads a time range for every flow at once.
    grain: Mapped[int] = mapped_column(primary_key=True)  # bucket size in seconds
    bucket_start: Mapped[datetime] = mapped_column(primary_key=True)
    flow_id: Mapped[int] = mapped_column(
        ForeignKey("flows.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    received: Mapped[int] = mapped_column(default=0)
    succeeded: Mapped[int] = mapped_column(default=0)
    filtered: Mapped[int] = mapped_column(default=0)
    dead_lettered: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    # Succeeded runs per LATENCY_BOUNDS bucket (len(LATENCY_BOUNDS) + 1 counts).
    latency: Mapped[Any] = mapped_column(JSONType)
    last_success_at: Mapped[datetime | None]


class RunStatsWatermark(db.Model):
    """Where the roll-up stands: every bucket before ``watermark`` is complete.

    One row (``name`` "runs"). Its row lock is also the roll-up's mutex: a roll-up updates
    it first, so a second scheduler waits and then sees the new watermark.
    """

    __tablename__ = "run_stats_watermarks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    watermark: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
