"""Reconciliation arithmetic over plain data: what came in against what went out.

Internal: a day's runs by status must add up: everything received was delivered
(``succeeded``) or deliberately ``filtered``; what is dead-lettered, still pending (queued,
running, retrying) or rejected is a difference, listed by business key.

External: a source or destination system's own id list for the day compared with ours,
within a tolerance (how many differing ids are still acceptable).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

OK_STATUSES = ("succeeded", "filtered")
PENDING_STATUSES = ("queued", "running", "retrying")


def day_bounds(day: date, timezone: str = "UTC") -> tuple[datetime, datetime]:
    """The local ``day`` in ``timezone`` as naive UTC [start, end)."""
    zone = ZoneInfo(timezone)

    def at(d: date) -> datetime:
        return datetime.combine(d, time(0), tzinfo=zone).astimezone(UTC).replace(tzinfo=None)

    return at(day), at(day + timedelta(days=1))


def totals(status_counts: Mapping[str, int]) -> dict[str, int]:
    """received / delivered / filtered / dead_lettered / pending / rejected, and the
    difference: what was received but neither delivered nor filtered."""
    received = sum(status_counts.values())
    delivered = status_counts.get("succeeded", 0)
    filtered = status_counts.get("filtered", 0)
    return {
        "received": received,
        "delivered": delivered,
        "filtered": filtered,
        "dead_lettered": status_counts.get("dead_lettered", 0),
        "pending": sum(status_counts.get(s, 0) for s in PENDING_STATUSES),
        "rejected": status_counts.get("rejected", 0),
        "difference": received - delivered - filtered,
    }


def destination_totals(delivery_counts: Mapping[str, int], reached: int) -> dict[str, int]:
    """Per destination step: deliveries by status against the runs that reached it."""
    acknowledged = delivery_counts.get("acknowledged", 0)
    return {
        "reached": reached,
        "delivered": acknowledged,
        "dead_lettered": delivery_counts.get("dead_lettered", 0),
        "pending": delivery_counts.get("retrying", 0) + delivery_counts.get("sending", 0),
        "difference": reached - acknowledged,
    }


@dataclass(frozen=True)
class IdComparison:
    expected: int
    actual: int
    missing: list[str]  # ours, not theirs
    unexpected: list[str]  # theirs, not ours
    tolerance: int

    @property
    def ok(self) -> bool:
        return len(self.missing) + len(self.unexpected) <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "actual": self.actual,
            "missing": self.missing,
            "unexpected": self.unexpected,
            "tolerance": self.tolerance,
            "ok": self.ok,
        }


def compare_ids(
    expected: Iterable[Any], actual: Iterable[Any], tolerance: int = 0, *, limit: int = 1000
) -> IdComparison:
    """Compare two id lists as sets of strings (``1`` and ``"1"`` are the same id)."""
    ours = {str(i) for i in expected if i is not None}
    theirs = {str(i) for i in actual if i is not None}
    return IdComparison(
        expected=len(ours),
        actual=len(theirs),
        missing=sorted(ours - theirs)[:limit],
        unexpected=sorted(theirs - ours)[:limit],
        tolerance=max(0, tolerance),
    )


def compare_counts(expected: int, actual: int, tolerance: int = 0) -> dict[str, Any]:
    """A count-only check (systems that give no id list)."""
    return {
        "expected": expected,
        "actual": actual,
        "difference": actual - expected,
        "tolerance": tolerance,
        "ok": abs(actual - expected) <= max(0, tolerance),
    }


def differences(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Runs that are not accounted for, by business key (None when the flow has none)."""
    return [
        {
            "business_key": row.get("business_key"),
            "run_id": row["run_id"],
            "status": row["status"],
            "reason": row.get("reason"),
        }
        for row in rows
        if row["status"] not in OK_STATUSES
    ]
