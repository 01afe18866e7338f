"""Health dashboards: per flow and overall, from SQL aggregates over the run ledger.

Every figure is a GROUP BY over ``runs`` (no per-flow query loops, no rows shipped to
Python): counts by flow and status for the last hour and for "now", the last success per
flow, latency buckets, and sparkline buckets. Buckets are computed in SQL as
``floor(seconds since the window start / bucket size)``, written per dialect (PostgreSQL:
``extract(epoch …)``, SQLite: ``julianday``), so the same code runs on both.

Latency percentiles come from a bucketed histogram (like /metrics): exact percentiles need
``percentile_cont`` (PostgreSQL only) or sorting every row; the histogram is one pass and
interpolates within a bucket, which is precise enough for a dashboard.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select

from app.errors import NotFound
from app.extensions import db
from app.models import Flow, Run, VersionStatus
from app.models._types import utcnow
from app.services import landscape
from flows.results import RunStatus

WINDOW = timedelta(hours=1)
LATENCY_BOUNDS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600, 21600, 86400,
)  # fmt: skip
SPARKLINES = {
    # name: (span, bucket size)
    "24h": (timedelta(hours=24), timedelta(hours=1)),
    "7d": (timedelta(days=7), timedelta(hours=6)),
}
_FAILED = (RunStatus.DEAD_LETTERED.value, RunStatus.REJECTED.value)
_BACKLOG = (RunStatus.QUEUED.value, RunStatus.RETRYING.value)


def _seconds(start: Any, end: Any) -> Any:
    if db.engine.dialect.name == "postgresql":
        # date_part is double precision; EXTRACT returns numeric since PostgreSQL 14, and
        # numeric arithmetic over a week of runs costs a third more.
        return func.date_part("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _bucket_of(column: Any, start: datetime, size: timedelta) -> Any:
    return func.floor(_seconds(start, column) / size.total_seconds())


def _flow_filter(stmt: Any, flow_id: int | None) -> Any:
    return stmt if flow_id is None else stmt.where(Run.flow_id == flow_id)


def _status_counts(flow_id: int | None, since: datetime | None) -> dict[int, dict[str, int]]:
    stmt = select(Run.flow_id, Run.status, func.count()).group_by(Run.flow_id, Run.status)
    if since is not None:
        stmt = stmt.where(Run.received_at >= since)
    out: dict[int, dict[str, int]] = defaultdict(dict)
    for fid, status, count in db.session.execute(_flow_filter(stmt, flow_id)):
        out[fid][status] = count
    return out


def _last_success(flow_id: int | None) -> dict[int, datetime]:
    """One index descent per flow (``ix_runs_flow_status_finished``), not a GROUP BY over
    every succeeded run."""
    latest = (
        select(func.max(Run.finished_at))
        .where(Run.flow_id == Flow.id, Run.status == RunStatus.SUCCEEDED.value)
        .scalar_subquery()
    )
    stmt = select(Flow.id, latest)
    if flow_id is not None:
        stmt = stmt.where(Flow.id == flow_id)
    return {fid: last for fid, last in db.session.execute(stmt).all() if last is not None}


def _latency_histograms(flow_id: int | None, since: datetime) -> dict[int, list[int]]:
    seconds = _seconds(Run.received_at, Run.finished_at)
    bucket = case(
        *((seconds <= bound, i) for i, bound in enumerate(LATENCY_BOUNDS)),
        else_=len(LATENCY_BOUNDS),
    ).label("bucket")
    stmt = (
        select(Run.flow_id, bucket, func.count())
        .where(
            Run.received_at >= since,
            Run.finished_at.is_not(None),
            Run.status == RunStatus.SUCCEEDED.value,
        )
        .group_by(Run.flow_id, bucket)
    )
    out: dict[int, list[int]] = defaultdict(lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    for fid, index, count in db.session.execute(_flow_filter(stmt, flow_id)):
        out[fid][int(index)] += count
    return out


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


def _sparklines(flow_id: int | None, now: datetime) -> dict[str, dict[int, dict[str, list[int]]]]:
    """{"24h": {flow_id: {"runs": [...], "failed": [...]}}, "7d": …}, oldest bucket first."""
    result: dict[str, dict[int, dict[str, list[int]]]] = {}
    for name, (span, size) in SPARKLINES.items():
        n = int(span / size)
        # Align buckets to whole bucket sizes so a refresh does not shift every bar.
        end = _align(now, size) + size
        start = end - span
        bucket = _bucket_of(Run.received_at, start, size).label("bucket")
        failed = func.sum(case((Run.status.in_(_FAILED), 1), else_=0))
        stmt = (
            select(Run.flow_id, bucket, func.count(), failed)
            .where(Run.received_at >= start)
            .group_by(Run.flow_id, bucket)
        )
        series: dict[int, dict[str, list[int]]] = defaultdict(
            lambda n=n: {"runs": [0] * n, "failed": [0] * n}
        )
        for fid, index, count, failures in db.session.execute(_flow_filter(stmt, flow_id)):
            i = int(index)
            if 0 <= i < n:
                series[fid]["runs"][i] += count
                series[fid]["failed"][i] += int(failures or 0)
        result[name] = series
    return result


def _align(moment: datetime, size: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1)
    seconds = (moment - epoch).total_seconds()
    step = size.total_seconds()
    return epoch + timedelta(seconds=seconds - seconds % step)


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


def _card(
    recent: dict[str, int],
    current: dict[str, int],
    histogram: Sequence[int],
    last_success: datetime | None,
    breaker: str,
    spark: dict[str, dict[str, list[int]]],
) -> dict[str, Any]:
    total = sum(recent.values())
    succeeded = recent.get(RunStatus.SUCCEEDED.value, 0)
    filtered = recent.get(RunStatus.FILTERED.value, 0)
    failed = sum(recent.get(s, 0) for s in _FAILED)
    finished = succeeded + filtered + failed
    return {
        "messages_per_minute": round(total / (WINDOW.total_seconds() / 60), 2),
        "runs_last_hour": total,
        "failed_last_hour": failed,
        "success_rate": round((succeeded + filtered) / finished, 4) if finished else None,
        "dead_letters": current.get(RunStatus.DEAD_LETTERED.value, 0),
        "backlog": sum(current.get(s, 0) for s in _BACKLOG),
        "running": current.get(RunStatus.RUNNING.value, 0),
        "latency_p50_seconds": percentile(histogram, 0.5),
        "latency_p95_seconds": percentile(histogram, 0.95),
        "breaker": breaker,
        "last_success_at": last_success,
        "sparklines": spark,
    }


def _empty_spark() -> dict[str, dict[str, list[int]]]:
    return {
        name: {"runs": [0] * int(span / size), "failed": [0] * int(span / size)}
        for name, (span, size) in SPARKLINES.items()
    }


def _sum_lists(lists: Iterable[list[int]], n: int) -> list[int]:
    total = [0] * n
    for values in lists:
        total = [a + b for a, b in zip(total, values, strict=True)]
    return total


def dashboard(flow_id: int | None = None) -> dict[str, Any]:
    """Per-flow health cards and the overall figures (or one flow's card)."""
    now = utcnow()
    since = now - WINDOW
    stmt = select(Flow).order_by(Flow.name)
    if flow_id is not None:
        stmt = stmt.where(Flow.id == flow_id)
    flows = list(db.session.execute(stmt).scalars())
    recent = _status_counts(flow_id, since)
    current = _status_counts(flow_id, None)
    histograms = _latency_histograms(flow_id, since)
    last = _last_success(flow_id)
    sparks = _sparklines(flow_id, now)
    breakers = _breakers_by_flow(flows)
    empty_hist = [0] * (len(LATENCY_BOUNDS) + 1)
    cards = []
    for flow in flows:
        spark = _empty_spark()
        for name in SPARKLINES:
            if flow.id in sparks[name]:
                spark[name] = sparks[name][flow.id]
        card = _card(
            recent.get(flow.id, {}),
            current.get(flow.id, {}),
            histograms.get(flow.id, empty_hist),
            last.get(flow.id),
            breakers.get(flow.id, "closed"),
            spark,
        )
        cards.append({"flow_id": flow.id, "flow_name": flow.name, "flow_slug": flow.slug, **card})
    overall = _overall(flows, recent, current, histograms, last, sparks, breakers)
    return {
        "generated_at": now,
        "window_seconds": int(WINDOW.total_seconds()),
        "overall": overall,
        "flows": cards,
    }


def _overall(
    flows: list[Flow],
    recent: dict[int, dict[str, int]],
    current: dict[int, dict[str, int]],
    histograms: dict[int, list[int]],
    last: dict[int, datetime],
    sparks: dict[str, dict[int, dict[str, list[int]]]],
    breakers: dict[int, str],
) -> dict[str, Any]:
    def merged(per_flow: dict[int, dict[str, int]]) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for statuses in per_flow.values():
            for status, count in statuses.items():
                out[status] += count
        return out

    n_hist = len(LATENCY_BOUNDS) + 1
    spark = {}
    for name, (span, size) in SPARKLINES.items():
        n = int(span / size)
        spark[name] = {
            "runs": _sum_lists((s["runs"] for s in sparks[name].values()), n),
            "failed": _sum_lists((s["failed"] for s in sparks[name].values()), n),
        }
    return _card(
        merged(recent),
        merged(current),
        _sum_lists(histograms.values(), n_hist),
        max(last.values(), default=None),
        landscape.worst_breaker(list(breakers.values())),
        spark,
    )


def flow_health(flow_id: int) -> dict[str, Any]:
    cards = dashboard(flow_id)["flows"]
    if not cards:
        raise NotFound(f"flow {flow_id} does not exist")
    return cards[0]
