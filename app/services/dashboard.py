"""Health dashboards: per flow and overall, from pre-aggregated buckets plus a live tail.

Figures (see app.services.rollup for what a bucket counts):
- last hour: runs *received* in it (messages per minute), runs that *finished* in it by
  status (success rate, failed), the latency histogram of the runs that succeeded in it;
- now: dead letters, backlog, running (live GROUP BY over the non-final statuses and
  dead letters only: an index range, never the whole ledger), breaker state (Redis);
- sparklines: per hour (24 h) and per 6 hours (7 d), runs received and runs that failed.

Reads: ``run_stats`` minute rows for the last hour and hour rows for the 7 days, both up to
the roll-up watermark; the runs after the watermark (normally the last 2-3 minutes) are
aggregated live the same way (``rollup.aggregate``), as is the partial minute where the
hour window starts. At 1,000,000 runs on PostgreSQL: ~60 ms, was ~240 ms (bench/dashboard.py).
Without a watermark (until the first roll-up ticks caught up after an upgrade) everything
is read live: the same figures, ~400 ms at that size.

Latency percentiles come from the bucketed histogram (like /metrics), interpolated within
a bucket: exact percentiles would need every row; this is precise enough for a dashboard.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, literal, select
from sqlalchemy.orm import selectinload

from app.errors import NotFound
from app.extensions import db
from app.models import Flow, Run, RunStats, VersionStatus
from app.models._types import utcnow
from app.models.run_stats import HOUR, LATENCY_BOUNDS, MINUTE
from app.services import landscape, rollup
from app.services.rollup import Tally, ceil_to, floor_to, latest
from flows.results import RunStatus

__all__ = ["LATENCY_BOUNDS", "dashboard", "flow_health", "percentile"]

WINDOW = timedelta(hours=1)
SPARKLINES = {
    # name: (span, bucket size)
    "24h": (timedelta(hours=24), timedelta(hours=1)),
    "7d": (timedelta(days=7), timedelta(hours=6)),
}
_BACKLOG = (RunStatus.QUEUED.value, RunStatus.RETRYING.value)
_NOW_STATUSES = (*_BACKLOG, RunStatus.RUNNING.value, RunStatus.DEAD_LETTERED.value)


def percentile(counts: Sequence[int], q: float) -> float | None:
    """The q-quantile of a bucketed histogram, interpolated linearly within its bucket."""
    total = sum(counts)
    if not total:
        return None
    rank, running = q * total, 0
    for i, count in enumerate(counts):
        if count and running + count >= rank:
            low = LATENCY_BOUNDS[i - 1] if i > 0 else 0.0
            high = LATENCY_BOUNDS[i] if i < len(LATENCY_BOUNDS) else LATENCY_BOUNDS[-1]
            return round(low + (high - low) * (rank - running) / count, 4)
        running += count
    return float(LATENCY_BOUNDS[-1])


@dataclass
class _Series:
    start: datetime
    size: timedelta
    runs: list[int]
    failed: list[int]

    def add(self, at: datetime, received: int, failed: int) -> None:
        i = (at - self.start) // self.size  # floor: a bucket before the line is out
        if 0 <= i < len(self.runs):
            self.runs[i] += received
            self.failed[i] += failed


@dataclass
class _FlowStats:
    recent: Tally = field(default_factory=Tally)
    last_success_at: datetime | None = None
    series: dict[str, _Series] = field(default_factory=dict)


def _empty_stats(now: datetime) -> _FlowStats:
    stats = _FlowStats()
    for name, (span, size) in SPARKLINES.items():
        # Whole bucket sizes from the epoch, so a refresh does not shift every bar.
        end = floor_to(now, int(size.total_seconds())) + size
        n = int(span / size)
        stats.series[name] = _Series(end - span, size, [0] * n, [0] * n)
    return stats


def _stored_rows(
    grain: int, start: datetime, end: datetime, flow_id: int | None, histogram: bool = True
) -> Any:
    columns = [c for c in RunStats.__table__.columns if histogram or c.name != "latency"]
    stmt = select(*columns).where(
        RunStats.grain == grain, RunStats.bucket_start >= start, RunStats.bucket_start < end
    )
    if flow_id is not None:
        stmt = stmt.where(RunStats.flow_id == flow_id)
    return db.session.execute(stmt)


def _window_stats(flow_id: int | None, now: datetime) -> dict[int, _FlowStats]:
    stats: dict[int, _FlowStats] = defaultdict(lambda: _empty_stats(now))
    week_start = min(s.start for s in _empty_stats(now).series.values())
    since = now - WINDOW
    whole_minutes = ceil_to(since, MINUTE)  # the hour window's first whole minute
    mark = rollup.watermark()
    rolled_up = mark is not None and mark > whole_minutes
    # Sparklines and last success: hour rows up to the watermark, the runs after it by hour.
    if mark:
        for row in _stored_rows(HOUR, week_start, mark, flow_id, histogram=False):
            _add_to_lines(stats[row.flow_id], row.bucket_start, row)
    live_from = max(mark, week_start) if mark else week_start
    tail = rollup.aggregate(live_from, None, flow_id, grain=HOUR, histogram=rolled_up)
    for (fid, hour), tally in tail.items():
        _add_to_lines(stats[fid], hour, tally)
    # The last hour to the second: minute rows of its whole minutes up to the watermark, the
    # runs after it (the tail above, all inside the hour) and the partial minute it starts
    # in, live; without a recent watermark, all of it live.
    if rolled_up:
        for row in _stored_rows(MINUTE, whole_minutes, mark, flow_id):
            stats[row.flow_id].recent.add(row)
        for (fid, _), tally in tail.items():
            stats[fid].recent.add(tally)
        edge = rollup.aggregate(since, whole_minutes, flow_id, grain=None)
    else:
        edge = rollup.aggregate(since, None, flow_id, grain=None)
    for (fid, _), tally in edge.items():
        stats[fid].recent.add(tally)
    return stats


def _add_to_lines(stats: _FlowStats, at: datetime, bucket: Any) -> None:
    """One minute or hour bucket (a Tally or a ``run_stats`` row) starting at ``at``."""
    failed = bucket.dead_lettered + bucket.rejected
    for series in stats.series.values():
        series.add(at, bucket.received, failed)
    stats.last_success_at = latest(stats.last_success_at, bucket.last_success_at)


def _now_counts(flow_id: int | None) -> dict[int, dict[str, int]]:
    """Runs waiting, running or dead-lettered now, per flow.

    Flow by flow (a semi-join on ``flows``): an index-only range of
    ``ix_runs_flow_status_finished`` per flow, ~12 ms at 1,000,000 runs (measured with
    the former (flow_id, status) index, of which it is an extension); a ``status`` index
    alone would read a heap page per dead letter (~250 ms).
    """
    flows = select(Flow.id) if flow_id is None else select(literal(flow_id))
    stmt = (
        select(Run.flow_id, Run.status, func.count())
        .where(Run.flow_id.in_(flows), Run.status.in_(_NOW_STATUSES))
        .group_by(Run.flow_id, Run.status)
    )
    out: dict[int, dict[str, int]] = defaultdict(dict)
    for fid, status, count in db.session.execute(stmt):
        out[fid][status] = count
    return out


def _last_success(flow_ids: Iterable[int]) -> dict[int, datetime]:
    """For flows without a success in the sparkline week: one index descent each
    (``ix_runs_flow_status_finished``)."""
    ids = list(flow_ids)
    if not ids:
        return {}
    latest_run = (
        select(func.max(Run.finished_at))
        .where(Run.flow_id == Flow.id, Run.status == RunStatus.SUCCEEDED.value)
        .scalar_subquery()
    )
    rows = db.session.execute(select(Flow.id, latest_run).where(Flow.id.in_(ids)))
    return {fid: last for fid, last in rows if last is not None}


def _breakers_by_flow(flows: Iterable[Flow]) -> dict[int, str]:
    """Worst breaker state over the destination connections of each flow's live version."""
    wanted: dict[int, set[int]] = {}
    for flow in flows:
        live = next((v for v in reversed(flow.versions) if v.status == VersionStatus.LIVE), None)
        steps = (live.definition or {}).get("steps") or [] if live else []
        wanted[flow.id] = {
            s["connection_id"]
            for s in steps
            if isinstance(s, dict) and s.get("type") == "deliver" and s.get("connection_id")
        }
    states = landscape.breaker_states({c for ids in wanted.values() for c in ids})
    return {fid: landscape.worst_breaker([states[c] for c in ids]) for fid, ids in wanted.items()}


def _card(stats: _FlowStats, now_counts: dict[str, int], breaker: str) -> dict[str, Any]:
    recent = stats.recent
    finished = recent.succeeded + recent.filtered + recent.failed
    return {
        "messages_per_minute": round(recent.received / (WINDOW.total_seconds() / 60), 2),
        "runs_last_hour": recent.received,
        "failed_last_hour": recent.failed,
        "success_rate": (
            round((recent.succeeded + recent.filtered) / finished, 4) if finished else None
        ),
        "dead_letters": now_counts.get(RunStatus.DEAD_LETTERED.value, 0),
        "backlog": sum(now_counts.get(s, 0) for s in _BACKLOG),
        "running": now_counts.get(RunStatus.RUNNING.value, 0),
        "latency_p50_seconds": percentile(recent.latency, 0.5),
        "latency_p95_seconds": percentile(recent.latency, 0.95),
        "breaker": breaker,
        "last_success_at": stats.last_success_at,
        "sparklines": {
            name: {"runs": series.runs, "failed": series.failed}
            for name, series in stats.series.items()
        },
    }


def dashboard(flow_id: int | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Per-flow health cards and the overall figures (or one flow's card)."""
    now = now or utcnow()
    stmt = select(Flow).options(selectinload(Flow.versions)).order_by(Flow.name)
    if flow_id is not None:
        stmt = stmt.where(Flow.id == flow_id)
    flows = list(db.session.execute(stmt).scalars())
    stats = _window_stats(flow_id, now)
    older = _last_success(f.id for f in flows if stats[f.id].last_success_at is None)
    for fid, last in older.items():
        stats[fid].last_success_at = last
    now_counts = _now_counts(flow_id)
    breakers = _breakers_by_flow(flows)
    cards = [
        {
            "flow_id": flow.id,
            "flow_name": flow.name,
            "flow_slug": flow.slug,
            **_card(stats[flow.id], now_counts.get(flow.id, {}), breakers.get(flow.id, "closed")),
        }
        for flow in flows
    ]
    return {
        "generated_at": now,
        "window_seconds": int(WINDOW.total_seconds()),
        "overall": _overall(now, [stats[f.id] for f in flows], now_counts, breakers),
        "flows": cards,
    }


def _overall(
    now: datetime,
    per_flow: list[_FlowStats],
    now_counts: dict[int, dict[str, int]],
    breakers: dict[int, str],
) -> dict[str, Any]:
    total = _empty_stats(now)
    for stats in per_flow:
        total.recent.add(stats.recent)
        total.last_success_at = latest(total.last_success_at, stats.last_success_at)
        for name, series in stats.series.items():
            into = total.series[name]
            into.runs = [a + b for a, b in zip(into.runs, series.runs, strict=True)]
            into.failed = [a + b for a, b in zip(into.failed, series.failed, strict=True)]
    counts: dict[str, int] = defaultdict(int)
    for statuses in now_counts.values():
        for status, count in statuses.items():
            counts[status] += count
    return _card(total, counts, landscape.worst_breaker(list(breakers.values())))


def flow_health(flow_id: int) -> dict[str, Any]:
    cards = dashboard(flow_id)["flows"]
    if not cards:
        raise NotFound(f"flow {flow_id} does not exist")
    return cards[0]
