"""Roll-up: fold runs into ``run_stats`` minute and hour buckets behind a watermark.

What a bucket counts. A run is *received* in the minute of its ``received_at`` and
*finishes* in the minute of its ``finished_at``, with the status it had then; a run that
finishes late (delivery retries, a crash recovery, a dead-letter replay) counts in the
minute it finished, however long ago it was received. Latency (``finished_at -
received_at``) is recorded for succeeded runs, in the minute they succeeded.

How. ``roll_up`` recomputes whole minutes from ``runs`` for [watermark, cutoff), where the
cutoff is the current minute minus ``LAG`` (a run committed up to ``LAG`` after its
timestamp is still counted), writes them with the hour rows of the hours they touch (sums
of their minute rows) and moves the watermark, in one transaction per chunk of history
(an hour at first, longer while transactions stay short).
Rows are replaced (DELETE then INSERT of the range), so repeating a range never double
counts. Every transaction first UPDATEs the watermark row: that row lock (SQLite: the write
lock) is the mutex, so a second scheduler waits, then reads the moved watermark and has
nothing left to do. A beat with nothing new is one primary-key read.

Buckets behind the watermark are not revisited: when a dead letter is replayed, its
failure stays in the minute it failed and its new outcome counts in the minute the replay
finished (both happened). ``backfill`` recomputes a past range from what ``runs`` holds now,
where a replayed run only has its last finish. The dashboard reads the buckets up to the
watermark and the runs after it live (app.services.dashboard), so it is never staler than
the runs table itself.

Empty watermark (fresh install, or an upgrade with history): the first ticks start at the
oldest run and catch up chunk by chunk, ``TICK_BUDGET_SECONDS`` per beat (1,000,000 runs
over 23 days: ~40 s of work on PostgreSQL); ``flask rollup backfill`` does it in one go.
Pruning: minute rows after ``MINUTE_ROWS_DAYS``, hour rows after
FLOWGATE_STATS_RETENTION_DAYS (default 400), by ``tick`` itself; run payload retention
(app.services.retention) never deletes runs, so it cannot change any count.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import DateTime, case, delete, func, insert, literal_column, select, type_coerce
from sqlalchemy import update as sql_update

from app.extensions import db
from app.models import Run, RunStats, RunStatsWatermark
from app.models._types import utcnow
from app.models.run_stats import HOUR, LATENCY_BOUNDS, MINUTE
from flows.results import FINAL_RUN_STATUSES, RunStatus

log = logging.getLogger("flowgate.rollup")

NAME = "runs"
LAG = timedelta(minutes=2)
# History goes an hour per transaction at first; the chunk doubles while transactions stay
# short (idle or quiet history) and halves when one gets long, between these bounds.
CHUNK = timedelta(hours=1)
MAX_CHUNK = timedelta(days=1)
CHUNK_SECONDS = (0.25, 1.0)
TICK_BUDGET_SECONDS = 2.0
MINUTE_ROWS_DAYS = 8  # the dashboard reads the last hour of minute rows; keep a week
STATS_RETENTION_DAYS = 400
STATUS_FIELDS = ("succeeded", "filtered", "dead_lettered", "rejected")
_FINAL = tuple(sorted(s.value for s in FINAL_RUN_STATUSES))
_EPOCH = datetime(1970, 1, 1)


@dataclass
class Tally:
    """One bucket's counts, in Python: what a ``run_stats`` row holds."""

    received: int = 0
    succeeded: int = 0
    filtered: int = 0
    dead_lettered: int = 0
    rejected: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    last_success_at: datetime | None = None

    @property
    def failed(self) -> int:
        return self.dead_lettered + self.rejected

    def add(self, other: Any) -> None:
        """Add another Tally or a ``run_stats`` row."""
        self.received += other.received
        for name in STATUS_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.latency:
            self.latency = [a + b for a, b in zip(self.latency, other.latency, strict=True)]
        self.last_success_at = latest(self.last_success_at, other.last_success_at)

    def row(self, flow_id: int, grain: int, bucket_start: datetime) -> dict[str, Any]:
        return {
            "flow_id": flow_id,
            "grain": grain,
            "bucket_start": bucket_start,
            "received": self.received,
            **{name: getattr(self, name) for name in STATUS_FIELDS},
            "latency": self.latency,
            "last_success_at": self.last_success_at,
        }


def latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return max((x for x in (a, b) if x is not None), default=None)


def floor_to(moment: datetime, seconds: int) -> datetime:
    elapsed = int((moment - _EPOCH).total_seconds())  # int() truncates: fine past 1970
    return _EPOCH + timedelta(seconds=elapsed - elapsed % seconds)


def ceil_to(moment: datetime, seconds: int) -> datetime:
    floor = floor_to(moment, seconds)
    return floor if floor == moment else floor + timedelta(seconds=seconds)


def seconds_between(start: Any, end: Any) -> Any:
    if db.engine.dialect.name == "postgresql":
        # date_part is double precision; EXTRACT returns (slower) numeric since PostgreSQL 14.
        return func.date_part("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


_TRUNCATE = {MINUTE: ("minute", "%Y-%m-%d %H:%M:00"), HOUR: ("hour", "%Y-%m-%d %H:00:00")}


def _truncate(column: Any, grain: int) -> Any:
    """The start of the minute or hour ``column`` falls in."""
    unit, pattern = _TRUNCATE[grain]
    # Literal arguments, not bound parameters: PostgreSQL must see the GROUP BY expression
    # identical to the selected one.
    if db.engine.dialect.name == "postgresql":
        return func.date_trunc(literal_column(f"'{unit}'"), column)
    return type_coerce(func.strftime(literal_column(f"'{pattern}'"), column), DateTime)


def latency_bucket(start: Any, end: Any) -> Any:
    """Index into LATENCY_BOUNDS of ``end - start`` (the last index: above every bound)."""
    seconds = seconds_between(start, end)
    return case(
        *((seconds <= literal_column(repr(float(b))), i) for i, b in enumerate(LATENCY_BOUNDS)),
        else_=len(LATENCY_BOUNDS),
    )


def aggregate(
    start: datetime,
    end: datetime | None = None,
    flow_id: int | None = None,
    grain: int | None = MINUTE,
    histogram: bool = True,
) -> dict[tuple[int, datetime | None], Tally]:
    """Tallies per flow and minute (or hour; ``grain`` None: one per flow, keyed None) of
    the runs received and finished in [start, end). ``histogram`` False skips latencies."""
    out: dict[tuple[int, datetime | None], Tally] = defaultdict(Tally)

    def query(column: Any, *columns: Any, grouped: tuple[Any, ...] = ()) -> Any:
        # Constants (no grain, no histogram) are selected but not grouped by.
        at = (_truncate(column, grain) if grain else literal_column("NULL")).label("at")
        stmt = select(Run.flow_id, at, *columns).where(column >= start)
        if end is not None:
            stmt = stmt.where(column < end)
        if flow_id is not None:
            stmt = stmt.where(Run.flow_id == flow_id)
        return stmt.group_by(Run.flow_id, *([at] if grain else []), *grouped)

    for fid, at, count in db.session.execute(query(Run.received_at, func.count())):
        out[fid, at].received += count
    succeeded = Run.status == RunStatus.SUCCEEDED.value
    if histogram:
        latency = case((succeeded, latency_bucket(Run.received_at, Run.finished_at)), else_=-1)
    else:
        latency = literal_column("-1")
    latency = latency.label("latency_bucket")
    finished = query(
        Run.finished_at,
        Run.status,
        latency,
        func.count(),
        func.max(Run.finished_at),
        grouped=(Run.status, *([latency] if histogram else [])),
    ).where(Run.status.in_(_FINAL))
    for fid, at, status, index, count, last in db.session.execute(finished):
        tally = out[fid, at]
        setattr(tally, status, getattr(tally, status) + count)
        if status == RunStatus.SUCCEEDED.value:
            if index >= 0:
                tally.latency[int(index)] += count
            tally.last_success_at = latest(tally.last_success_at, last)
    return dict(out)


@dataclass(frozen=True)
class RollupReport:
    watermark: datetime | None
    chunks: int = 0  # transactions that moved the watermark or rewrote a range
    buckets: int = 0  # minute rows written

    def __str__(self) -> str:
        at = self.watermark.isoformat(timespec="minutes") + "Z" if self.watermark else "none"
        return f"rolled up {self.buckets} minute buckets in {self.chunks} chunks; watermark {at}"


def watermark() -> datetime | None:
    return db.session.execute(
        select(RunStatsWatermark.watermark).where(RunStatsWatermark.name == NAME)
    ).scalar()


def _lock() -> datetime | None:
    """Take the roll-up mutex (the watermark row, created if missing); its watermark."""
    touch = (
        sql_update(RunStatsWatermark)
        .where(RunStatsWatermark.name == NAME)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if db.session.execute(touch).rowcount == 0:
        dialect = db.engine.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        # Two first ticks at once: one inserts, the other waits on it and inserts nothing.
        db.session.execute(
            dialect_insert(RunStatsWatermark)
            .values(name=NAME, watermark=None, updated_at=utcnow())
            .on_conflict_do_nothing(index_elements=["name"])
        )
        db.session.execute(touch)
    return watermark()


def _set_watermark(moment: datetime) -> None:
    db.session.execute(
        sql_update(RunStatsWatermark)
        .where(RunStatsWatermark.name == NAME)
        .values(watermark=moment)
        .execution_options(synchronize_session=False)
    )


def _in_range(grain: int, start: datetime, end: datetime) -> Any:
    c = RunStats.__table__.c
    return (c.grain == grain, c.bucket_start >= start, c.bucket_start < end)


def _recompute(start: datetime, end: datetime) -> int:
    """Replace the minute rows of [start, end) and the hour rows over them, from ``runs``."""
    table = RunStats.__table__  # Core statements: plain rows, no identity map to go stale
    tallies = aggregate(start, end)
    replaced = db.session.execute(delete(table).where(*_in_range(MINUTE, start, end)))
    if tallies:
        rows = [t.row(fid, MINUTE, at) for (fid, at), t in tallies.items()]
        db.session.execute(insert(table), rows)
    elif not replaced.rowcount:
        return 0  # nothing before, nothing now: the hour rows are right as they are
    # An hour row is the sum of its minute rows: the ones just computed, and those of the
    # same hours outside [start, end) (a tick's chunk starts and ends inside an hour).
    hours: dict[tuple[int, datetime], Tally] = defaultdict(Tally)
    for (fid, at), tally in tallies.items():
        hours[fid, floor_to(at, HOUR)].add(tally)
    first, last = floor_to(start, HOUR), ceil_to(end, HOUR)
    for low, high in ((first, start), (end, last)):
        if low < high:
            for row in db.session.execute(select(table).where(*_in_range(MINUTE, low, high))):
                hours[row.flow_id, floor_to(row.bucket_start, HOUR)].add(row)
    db.session.execute(delete(table).where(*_in_range(HOUR, first, last)))
    if hours:
        db.session.execute(insert(table), [t.row(fid, HOUR, at) for (fid, at), t in hours.items()])
    return len(tallies)


def _next_activity(after: datetime | None) -> datetime | None:
    """The first receipt or finish at or after ``after``: two index probes, so idle time
    (a quiet night, a year-old first run) is skipped, not walked an hour at a time."""
    received, finished = select(func.min(Run.received_at)), select(func.min(Run.finished_at))
    if after is not None:
        received = received.where(Run.received_at >= after)
        finished = finished.where(Run.finished_at >= after)
    first = db.session.execute(select(received.scalar_subquery(), finished.scalar_subquery()))
    return min((t for t in first.one() if t is not None), default=None)


def _resize(size: timedelta, seconds: float) -> timedelta:
    """The next chunk: whole hours, so chunks keep ending on whole hours."""
    fast, slow = CHUNK_SECONDS
    hours = size // CHUNK
    if seconds < fast:
        hours *= 2
    elif seconds > slow:
        hours //= 2
    return min(max(hours, 1) * CHUNK, MAX_CHUNK)


def roll_up(now: datetime | None = None, budget_seconds: float | None = None) -> RollupReport:
    """Fold every minute before ``now - LAG`` into buckets, a chunk per transaction.

    Stops after ``budget_seconds`` (None: when caught up); the next call goes on.
    """
    cutoff = floor_to((now or utcnow()) - LAG, MINUTE)
    peeked = watermark()
    if peeked is not None and peeked >= cutoff:
        return RollupReport(peeked)  # the usual beat: the minute is not over yet
    started = time.monotonic()
    chunks = buckets = 0
    size = CHUNK
    while True:
        began = time.monotonic()
        mark = _lock()
        if mark is not None and mark >= cutoff:  # another scheduler got here first
            db.session.commit()
            return RollupReport(mark, chunks, buckets)
        activity = _next_activity(mark)
        start = min(floor_to(activity, MINUTE), cutoff) if activity else cutoff
        if mark is not None:
            start = max(start, mark)
        # Chunks end on whole hours: an hour's minute rows are then all written together.
        end = min(floor_to(start, HOUR) + size, cutoff) if start < cutoff else cutoff
        if start < end:
            buckets += _recompute(start, end)
        _set_watermark(end)
        db.session.commit()
        chunks += 1
        size = _resize(size, time.monotonic() - began)
        if end >= cutoff or (
            budget_seconds is not None and time.monotonic() - started > budget_seconds
        ):
            level = logging.INFO if chunks > 1 else logging.DEBUG  # catching up vs a beat
            log.log(
                level, "rollup.rolled_up chunks=%s buckets=%s watermark=%s", chunks, buckets, end
            )
            return RollupReport(end, chunks, buckets)


def backfill(since: datetime | None = None, now: datetime | None = None) -> RollupReport:
    """Recompute the buckets from ``since`` (floored to the hour; default the oldest run)
    up to the watermark from what ``runs`` holds now, then roll up to ``now``."""
    since = since or _next_activity(None)
    if since is None:
        return roll_up(now)
    moment = floor_to(since, HOUR)
    chunks = buckets = 0
    size = CHUNK
    while True:
        began = time.monotonic()
        mark = _lock()
        if mark is None:  # never rolled up: start at ``since`` (earlier runs stay out)
            _set_watermark(moment)
            db.session.commit()
            break
        if moment >= mark:  # the roll-up has not reached ``since`` yet
            db.session.commit()
            break
        end = min(moment + size, mark)
        buckets += _recompute(moment, end)
        db.session.commit()
        chunks += 1
        size = _resize(size, time.monotonic() - began)
        moment = end
    rest = roll_up(now)
    return RollupReport(rest.watermark, chunks + rest.chunks, buckets + rest.buckets)


def prune(days: int, now: datetime | None = None) -> int:
    """Delete minute rows after MINUTE_ROWS_DAYS and hour rows after ``days``."""
    now = now or utcnow()
    deleted = 0
    for grain, keep in ((MINUTE, MINUTE_ROWS_DAYS), (HOUR, max(days, MINUTE_ROWS_DAYS))):
        c = RunStats.__table__.c
        result = db.session.execute(
            delete(RunStats.__table__).where(
                c.grain == grain, c.bucket_start < now - timedelta(days=keep)
            )
        )
        deleted += result.rowcount or 0
    db.session.commit()
    return deleted


def tick(app: Flask) -> RollupReport:
    """The scheduler's beat: roll up for at most TICK_BUDGET_SECONDS; prune when the
    watermark moved (at most once a minute, and a delete of nothing is an index probe)."""
    report = roll_up(budget_seconds=TICK_BUDGET_SECONDS)
    if report.chunks:
        prune(app.config.get("FLOWGATE_STATS_RETENTION_DAYS") or STATS_RETENTION_DAYS)
    return report
