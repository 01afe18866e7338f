"""Alert rules over plain data: what counts as "broken" for one flow, decided without I/O.

The service (``app.services.alerts``) gathers counts, latencies and timestamps with a few
aggregate queries and asks this module, rule by rule, whether the flow is in trouble. Every
timestamp here is naive UTC (how the ledger stores them); business hours are declared in the
contract's time zone and converted with :mod:`zoneinfo`.

Rule kinds and their parameters (defaults from :func:`default_rules`):

- ``consecutive_failures`` ``threshold``: the newest runs failed (dead-lettered or waiting
  for a retry) this many times in a row;
- ``failure_rate`` ``window_minutes``, ``max_percent``, ``min_runs``;
- ``latency_p95`` ``window_minutes``, ``max_seconds`` (the contract's SLA), ``min_runs``;
- ``silence`` ``minutes``: no message for that many minutes *of business hours*;
- ``volume_anomaly`` ``percent``, ``weeks``, ``min_baseline``: the last complete hour's
  volume against the same hour on the previous ``weeks`` same weekdays;
- ``dead_letter_growth`` ``window_minutes``, ``threshold``: new dead letters in the window;
- ``breaker_open``: a destination's circuit breaker is open.

``escalation`` ``after_minutes`` sits beside them: an alert nobody acknowledged by then goes
to the contract's on-call contact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

RULE_KINDS = (
    "consecutive_failures",
    "failure_rate",
    "latency_p95",
    "silence",
    "volume_anomaly",
    "dead_letter_growth",
    "breaker_open",
)
SEVERITY = {
    "consecutive_failures": "critical",
    "breaker_open": "critical",
    "failure_rate": "high",
    "dead_letter_growth": "high",
    "silence": "high",
    "latency_p95": "warning",
    "volume_anomaly": "warning",
}
DEFAULT_ESCALATE_AFTER_MINUTES = 15
_MAX_SILENCE_DAYS = 14


@dataclass(frozen=True)
class BusinessHours:
    """Declared opening hours: weekdays (Mon=0) and a local start/end in ``timezone``."""

    timezone: str
    days: tuple[int, ...]
    start: time
    end: time

    @classmethod
    def from_contract(cls, contract: Mapping[str, Any] | None) -> BusinessHours | None:
        """The contract's ``sla.business_hours``, or None when absent or unreadable."""
        raw = ((contract or {}).get("sla") or {}).get("business_hours")
        if not isinstance(raw, Mapping):
            return None
        try:
            ZoneInfo(str(raw.get("timezone") or "UTC"))
            return cls(
                timezone=str(raw.get("timezone") or "UTC"),
                days=tuple(sorted({int(d) for d in raw.get("days", range(7))})),
                start=time.fromisoformat(str(raw.get("start", "00:00"))),
                end=_parse_end(str(raw.get("end", "24:00"))),
            )
        except (ValueError, TypeError, ZoneInfoNotFoundError):
            return None

    @classmethod
    def always(cls) -> BusinessHours:
        """Around the clock (UTC, every day)."""
        return cls("UTC", tuple(range(7)), time(0), time.max)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _spans(self, day: date) -> tuple[datetime, datetime] | None:
        """The opening span of a local ``day`` as naive UTC, or None on a closed day."""
        if day.weekday() not in self.days:
            return None
        opens = datetime.combine(day, self.start, tzinfo=self.zone)
        closes_day = day if self.end > self.start else day + timedelta(days=1)
        closes = datetime.combine(closes_day, self.end, tzinfo=self.zone)
        if self.end == time.max:  # "24:00": up to midnight
            closes = datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.zone)
        return _naive(opens), _naive(closes)

    def contains(self, at: datetime) -> bool:
        """Is ``at`` (naive UTC) inside business hours?"""
        local = _aware(at).astimezone(self.zone).date()
        for day in (local - timedelta(days=1), local):
            span = self._spans(day)
            if span and span[0] <= at < span[1]:
                return True
        return False

    def minutes_between(self, start: datetime, end: datetime) -> float:
        """Business minutes inside [start, end) (naive UTC), counted at most 14 days back."""
        if end <= start:
            return 0.0
        start = max(start, end - timedelta(days=_MAX_SILENCE_DAYS))
        first = _aware(start).astimezone(self.zone).date() - timedelta(days=1)
        last = _aware(end).astimezone(self.zone).date()
        total = 0.0
        day = first
        while day <= last:
            span = self._spans(day)
            if span:
                lo, hi = max(span[0], start), min(span[1], end)
                if hi > lo:
                    total += (hi - lo).total_seconds() / 60
            day += timedelta(days=1)
        return total


def _parse_end(value: str) -> time:
    return time.max if value in ("24:00", "24:00:00") else time.fromisoformat(value)


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _naive(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None)


# -- rules and their defaults ------------------------------------------------------------


def default_rules(contract: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Effective defaults for a flow, derived from its live contract (None: generic ones).

    Silence is only watched when business hours are declared (night-time quiet is normal);
    its window follows the declared volume: three expected gaps, between 15 and 240 minutes.
    """
    contract = contract or {}
    sla = contract.get("sla") or {}
    max_latency = int(sla.get("max_latency_seconds") or 300)
    per_day = int(contract.get("volume_per_day") or 0)
    expected_gap = (24 * 60 / per_day) if per_day > 0 else 80
    silence_minutes = int(min(240, max(15, math.ceil(3 * expected_gap))))
    hours = BusinessHours.from_contract(contract)
    return {
        "consecutive_failures": {"enabled": True, "threshold": 3},
        "failure_rate": {"enabled": True, "window_minutes": 15, "max_percent": 50, "min_runs": 5},
        "latency_p95": {
            "enabled": True,
            "window_minutes": 15,
            "max_seconds": max_latency,
            "min_runs": 5,
        },
        "silence": {"enabled": hours is not None, "minutes": silence_minutes},
        "volume_anomaly": {
            "enabled": per_day > 0,
            "percent": 50,
            "weeks": 4,
            "min_baseline": 20,
        },
        "dead_letter_growth": {"enabled": True, "window_minutes": 15, "threshold": 5},
        "breaker_open": {"enabled": True},
        # Not a rule: after how long an unacknowledged alert goes to the on-call contact.
        "escalation": {"enabled": True, "after_minutes": DEFAULT_ESCALATE_AFTER_MINUTES},
    }


def merge_rules(
    defaults: Mapping[str, Mapping[str, Any]], overrides: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Stored per-flow overrides (``{kind: {"enabled": bool, **params}}``) over defaults;
    unknown keys of an override are ignored, values keep the default's type."""
    merged: dict[str, dict[str, Any]] = {}
    for kind, params in defaults.items():
        rule = dict(params)
        for key, value in (overrides.get(kind) or {}).items():
            if key in rule and value is not None:
                rule[key] = type(rule[key])(value)
        merged[kind] = rule
    return merged


# -- findings ----------------------------------------------------------------------------


@dataclass
class Finding:
    """One rule's verdict. ``firing`` False means the condition is clear (resolve)."""

    kind: str
    firing: bool
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    first_failure_at: datetime | None = None
    run_id: int | None = None

    @property
    def severity(self) -> str:
        return SEVERITY.get(self.kind, "warning")


@dataclass(frozen=True)
class RunOutcome:
    """A recent run as far as alerting cares: did it fail, and when did it arrive."""

    run_id: int
    received_at: datetime
    failed: bool


def consecutive_failures(outcomes: Sequence[RunOutcome], threshold: int) -> Finding:
    """``outcomes`` newest first; fires when the newest ``threshold`` or more all failed.

    ``first_failure_at`` is when the oldest run of the streak arrived (the start of MTTD).
    """
    streak: list[RunOutcome] = []
    for outcome in outcomes:
        if not outcome.failed:
            break
        streak.append(outcome)
    firing = threshold > 0 and len(streak) >= threshold
    return Finding(
        "consecutive_failures",
        firing,
        f"{len(streak)} runs in a row failed" if firing else "",
        {"streak": len(streak), "threshold": threshold},
        first_failure_at=min((o.received_at for o in streak), default=None),
        run_id=streak[0].run_id if streak else None,
    )


def failure_rate(failed: int, total: int, params: Mapping[str, Any]) -> Finding:
    """Fires when at least ``min_runs`` finished in the window and the failed share is
    above ``max_percent``."""
    percent = 100.0 * failed / total if total else 0.0
    firing = total >= int(params["min_runs"]) and percent > float(params["max_percent"])
    return Finding(
        "failure_rate",
        firing,
        f"{percent:.0f}% of {total} runs failed in the last {params['window_minutes']} min"
        if firing
        else "",
        {"failed": failed, "total": total, "percent": round(percent, 1)},
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_p95(latencies: Sequence[float], params: Mapping[str, Any]) -> Finding:
    """Fires when the p95 of received → finished (seconds) exceeds the SLA."""
    p95 = percentile(latencies, 95)
    limit = float(params["max_seconds"])
    firing = p95 is not None and len(latencies) >= int(params["min_runs"]) and p95 > limit
    return Finding(
        "latency_p95",
        firing,
        f"p95 latency {p95:.1f}s is above the SLA of {limit:.0f}s" if firing else "",
        {"p95_seconds": None if p95 is None else round(p95, 3), "runs": len(latencies)},
    )


def silence(
    last_received_at: datetime | None,
    now: datetime,
    hours: BusinessHours | None,
    params: Mapping[str, Any],
    *,
    since: datetime | None = None,
) -> Finding:
    """Fires inside business hours when no message arrived for ``minutes`` business minutes.

    ``since`` (e.g. when the flow went live) stands in for a flow that never received one.
    Outside business hours the rule neither fires nor clears an open silence alert's cause:
    it reports not firing, so an alert resolves at closing time or when traffic returns.
    """
    if hours is None or not hours.contains(now):
        return Finding("silence", False, details={"in_business_hours": False})
    reference = last_received_at or since
    if reference is None:
        return Finding("silence", False, details={"in_business_hours": True})
    quiet = hours.minutes_between(reference, now)
    limit = float(params["minutes"])
    firing = quiet >= limit
    return Finding(
        "silence",
        firing,
        f"no message for {quiet:.0f} business minutes (limit {limit:.0f})" if firing else "",
        {
            "in_business_hours": True,
            "quiet_business_minutes": round(quiet, 1),
            "last_received_at": last_received_at.isoformat() if last_received_at else None,
        },
        # The traffic stopped right after the last message: that is when it went wrong.
        first_failure_at=reference if firing else None,
    )


def volume_windows(
    now: datetime, timezone: str, weeks: int
) -> tuple[tuple[datetime, datetime], list[tuple[datetime, datetime]]]:
    """The last complete local hour and the same local hour on the ``weeks`` previous
    same weekdays, as naive UTC [start, end) pairs (DST-correct in ``timezone``)."""
    zone = ZoneInfo(timezone)
    local = _aware(now).astimezone(zone)
    hour_end = local.replace(minute=0, second=0, microsecond=0)
    hour_start_local = (hour_end - timedelta(hours=1)).astimezone(zone)
    day, clock = hour_start_local.date(), hour_start_local.time()

    def window(d: date) -> tuple[datetime, datetime]:
        start = datetime.combine(d, clock, tzinfo=zone)
        return _naive(start), _naive(start) + timedelta(hours=1)

    current = (_naive(hour_start_local), _naive(hour_end))
    return current, [window(day - timedelta(weeks=k)) for k in range(1, weeks + 1)]


def volume_anomaly(current: int, baseline: Sequence[int], params: Mapping[str, Any]) -> Finding:
    """Fires when the last hour's count is off by more than ``percent`` from the mean of the
    same hour on previous same weekdays (needs a mean of at least ``min_baseline``)."""
    mean = sum(baseline) / len(baseline) if baseline else 0.0
    if mean < float(params["min_baseline"]) or mean == 0:
        return Finding("volume_anomaly", False, details={"current": current, "baseline": mean})
    off = 100.0 * (current - mean) / mean
    firing = abs(off) > float(params["percent"])
    word = "above" if off > 0 else "below"
    return Finding(
        "volume_anomaly",
        firing,
        f"{current} messages last hour, {abs(off):.0f}% {word} the usual {mean:.0f}"
        if firing
        else "",
        {"current": current, "baseline": round(mean, 1), "off_percent": round(off, 1)},
    )


def dead_letter_growth(new_dead_letters: int, params: Mapping[str, Any]) -> Finding:
    threshold = int(params["threshold"])
    firing = threshold > 0 and new_dead_letters >= threshold
    return Finding(
        "dead_letter_growth",
        firing,
        f"{new_dead_letters} new dead letters in the last {params['window_minutes']} min"
        if firing
        else "",
        {"new_dead_letters": new_dead_letters, "threshold": threshold},
    )


@dataclass(frozen=True)
class BreakerView:
    connection_id: int
    connection_name: str
    system_name: str | None
    state: str  # closed | open | half_open
    consecutive_failures: int


def breaker_open(breakers: Sequence[BreakerView]) -> Finding:
    """Fires while any destination breaker of the flow is open or half-open."""
    tripped = [b for b in breakers if b.state in ("open", "half_open")]
    names = ", ".join(f"{b.connection_name} ({b.system_name or 'no system'})" for b in tripped)
    return Finding(
        "breaker_open",
        bool(tripped),
        f"circuit breaker open for {names}" if tripped else "",
        {
            "connections": [
                {"id": b.connection_id, "name": b.connection_name, "state": b.state}
                for b in tripped
            ]
        },
    )
