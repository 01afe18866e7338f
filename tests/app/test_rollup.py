"""Run statistics roll-up (app.services.rollup) and the dashboard read from it.

The reference for every figure is a plain Python count over the seeded runs, written from
the documented semantics (received by ``received_at``, outcomes by ``finished_at``), not
from the SQL under test.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, select, update

from app.extensions import db
from app.models import Flow, FlowVersion, Run, RunStats
from app.models._types import utcnow
from app.models.run_stats import HOUR, LATENCY_BOUNDS, MINUTE
from app.services import dashboard as dash
from app.services import retention, rollup
from app.services.rollup import floor_to

# Not on a minute boundary: the hour window starts mid-minute.
NOW = datetime(2026, 11, 27, 12, 34, 56, 500000)
FINAL = ("succeeded", "filtered", "dead_lettered", "rejected")
# Latencies away from the histogram bounds (SQLite's julianday is exact to ~0.1 ms).
LATENCIES = (0.003, 0.04, 0.3, 0.7, 1.5, 3.2, 7.5, 45.0, 90.0, 400.0, 5400.0)


_VERSIONS: dict[int, int] = {}  # flow id → its version id, for the seeded runs


def make_flows(n: int) -> list[int]:
    _VERSIONS.clear()
    ids = []
    for i in range(n):
        flow = Flow(name=f"Flow {i}", slug=f"flow-{i}")
        version = FlowVersion(flow=flow, number=1, status="live", definition={}, content_hash="x")
        db.session.add_all([flow, version])
        db.session.flush()
        ids.append(flow.id)
        _VERSIONS[flow.id] = version.id
    db.session.commit()
    return ids


def seed(flow_ids: list[int], now: datetime = NOW, count: int = 900) -> None:
    """Deterministic runs over the last 8 days, denser in the last two hours: every final
    status, runs in flight, finishes hours after receipt, edges of the hour window and of
    minutes."""
    since = now - WINDOW
    rows = []
    for i in range(count):
        fid = flow_ids[i % len(flow_ids)]
        if i % 3 == 0:
            age = timedelta(seconds=(i * 7919) % (8 * 86400))  # anywhere in 8 days
        else:
            age = timedelta(seconds=(i * 37) % 7200, microseconds=(i * 1013) % 1_000_000)
        received = now - age
        if i % 97 == 0:
            received = floor_to(received, MINUTE)  # exactly on a minute boundary
        status = FINAL[i % 4] if i % 11 else ("queued", "running", "retrying")[i % 3]
        latency = LATENCIES[i % len(LATENCIES)]
        if i % 13 == 0:
            latency += 3 * 3600  # finished three hours after it was received
        finished = received + timedelta(seconds=latency)
        if status not in FINAL or finished > now:
            finished, status = None, status if status not in FINAL else "retrying"
        rows.append(_run(fid, status, received, finished))
    # The window's first instant, and half a second either side of it.
    for shift in (-0.5, 0.0, 0.5):
        at = since + timedelta(seconds=shift)
        rows.append(_run(flow_ids[0], "succeeded", at, at + timedelta(seconds=0.3)))
        rows.append(_run(flow_ids[0], "dead_lettered", at - timedelta(seconds=2), at))
    db.session.execute(insert(Run), rows)
    db.session.commit()


WINDOW = timedelta(hours=1)


def _run(flow_id: int, status: str, received: datetime, finished: datetime | None) -> dict:
    return {
        "flow_id": flow_id,
        "flow_version_id": _VERSIONS[flow_id],
        "trigger_kind": "webhook",
        "payload": {},
        "payload_hash": "h",
        "status": status,
        "received_at": received,
        "finished_at": finished,
    }


def _latency_index(seconds: float) -> int:
    return bisect_left(LATENCY_BOUNDS, seconds)


def reference(now: datetime, flow_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Every card figure (but the breaker), counted in Python from the runs table."""
    runs = db.session.execute(
        select(Run.flow_id, Run.status, Run.received_at, Run.finished_at)
    ).all()
    since = now - WINDOW
    lines = {}
    for name, (span, size) in dash.SPARKLINES.items():
        end = floor_to(now, int(size.total_seconds())) + size
        lines[name] = (end - span, size, int(span / size))
    out: dict[int, dict[str, Any]] = {}
    for fid in flow_ids:
        mine = [r for r in runs if r.flow_id == fid]
        received = [r for r in mine if r.received_at >= since]
        finished = [r for r in mine if r.finished_at and r.finished_at >= since]
        by_status = defaultdict(int)
        histogram = [0] * (len(LATENCY_BOUNDS) + 1)
        for r in finished:
            by_status[r.status] += 1
            if r.status == "succeeded":
                seconds = (r.finished_at - r.received_at).total_seconds()
                histogram[_latency_index(seconds)] += 1
        failed = by_status["dead_lettered"] + by_status["rejected"]
        ok = by_status["succeeded"] + by_status["filtered"]
        successes = [r.finished_at for r in mine if r.status == "succeeded" and r.finished_at]
        sparks = {}
        for name, (start, size, n) in lines.items():
            runs_line, failed_line = [0] * n, [0] * n
            for r in mine:
                i = (r.received_at - start) // size
                if 0 <= i < n:
                    runs_line[i] += 1
                if r.finished_at and r.status in ("dead_lettered", "rejected"):
                    i = (r.finished_at - start) // size
                    if 0 <= i < n:
                        failed_line[i] += 1
            sparks[name] = {"runs": runs_line, "failed": failed_line}
        now_statuses = defaultdict(int)
        for r in mine:
            now_statuses[r.status] += 1
        out[fid] = {
            "runs_last_hour": len(received),
            "messages_per_minute": round(len(received) / 60, 2),
            "failed_last_hour": failed,
            "success_rate": round(ok / (ok + failed), 4) if ok + failed else None,
            "dead_letters": now_statuses["dead_lettered"],
            "backlog": now_statuses["queued"] + now_statuses["retrying"],
            "running": now_statuses["running"],
            "latency_p50_seconds": dash.percentile(histogram, 0.5),
            "latency_p95_seconds": dash.percentile(histogram, 0.95),
            "last_success_at": max(successes, default=None),
            "sparklines": sparks,
        }
    return out


def cards(now: datetime) -> dict[int, dict[str, Any]]:
    result = dash.dashboard(now=now)
    return {c["flow_id"]: {k: v for k, v in c.items() if k in FIGURES} for c in result["flows"]} | {
        0: {k: v for k, v in result["overall"].items() if k in FIGURES}
    }


FIGURES = (
    "runs_last_hour",
    "messages_per_minute",
    "failed_last_hour",
    "success_rate",
    "dead_letters",
    "backlog",
    "running",
    "latency_p50_seconds",
    "latency_p95_seconds",
    "last_success_at",
    "sparklines",
)


def assert_matches_reference(now: datetime, flow_ids: list[int]) -> None:
    got = cards(now)
    expected = reference(now, flow_ids)
    for fid in flow_ids:
        assert got[fid] == expected[fid], fid
    overall = got[0]
    assert overall["runs_last_hour"] == sum(e["runs_last_hour"] for e in expected.values())
    assert overall["dead_letters"] == sum(e["dead_letters"] for e in expected.values())
    for name in dash.SPARKLINES:
        lines = [e["sparklines"][name]["runs"] for e in expected.values()]
        total = [sum(v) for v in zip(*lines, strict=True)]
        assert overall["sparklines"][name]["runs"] == total


def stored(grain: int) -> dict[tuple[int, datetime], dict[str, Any]]:
    rows = db.session.execute(select(*RunStats.__table__.columns).where(RunStats.grain == grain))
    return {
        (r.flow_id, r.bucket_start): {
            k: getattr(r, k) for k in ("received", *FINAL, "latency", "last_success_at")
        }
        for r in rows
    }


def minute_counts(before: datetime) -> dict[tuple[int, datetime], dict[str, Any]]:
    """What the minute rows must hold for everything before ``before``, from Python."""
    out: dict[tuple[int, datetime], dict[str, Any]] = {}

    def bucket(fid: int, at: datetime) -> dict[str, Any]:
        key = (fid, floor_to(at, MINUTE))
        if key not in out:
            out[key] = {"received": 0, **dict.fromkeys(FINAL, 0)}
            out[key] |= {"latency": [0] * (len(LATENCY_BOUNDS) + 1), "last_success_at": None}
        return out[key]

    for r in db.session.execute(select(Run)).scalars():
        if r.received_at < before:
            bucket(r.flow_id, r.received_at)["received"] += 1
        if r.finished_at and r.finished_at < before:
            b = bucket(r.flow_id, r.finished_at)
            b[r.status] += 1
            if r.status == "succeeded":
                b["latency"][_latency_index((r.finished_at - r.received_at).total_seconds())] += 1
                b["last_success_at"] = max(filter(None, (b["last_success_at"], r.finished_at)))
    return out


def test_minute_and_hour_buckets_match_a_live_count(app):
    flows = make_flows(3)
    seed(flows)
    report = rollup.roll_up(NOW)
    cutoff = floor_to(NOW - rollup.LAG, MINUTE)
    assert report.watermark == cutoff == rollup.watermark()
    assert stored(MINUTE) == minute_counts(cutoff)
    assert_hours_are_minute_sums()


def assert_hours_are_minute_sums() -> None:
    hours: dict[tuple[int, datetime], dict[str, Any]] = {}
    for (fid, at), counts in stored(MINUTE).items():
        hour = hours.setdefault((fid, floor_to(at, HOUR)), {"latency": [0] * 19})
        for name in ("received", *FINAL):
            hour[name] = hour.get(name, 0) + counts[name]
        hour["latency"] = [a + b for a, b in zip(hour["latency"], counts["latency"], strict=True)]
        hour["last_success_at"] = max(
            filter(None, (hour.get("last_success_at"), counts["last_success_at"])), default=None
        )
    assert hours == stored(HOUR)


def test_ticks_inside_an_hour_keep_its_row_the_sum_of_its_minutes(app):
    flows = make_flows(2)
    seed(flows, count=300)
    start = NOW - timedelta(minutes=40)
    rollup.roll_up(start)
    for minutes in range(1, 41, 3):  # a beat every few minutes while runs keep arriving
        at = start + timedelta(minutes=minutes)
        # The runs waiting for a retry since the last beat fail for good now.
        db.session.execute(
            update(Run)
            .where(Run.status == "retrying", Run.received_at >= start)
            .values(status="dead_lettered", finished_at=at)
        )
        db.session.execute(
            insert(Run),
            [
                _run(flows[0], "succeeded", at - timedelta(seconds=50), at),
                _run(flows[1], "retrying", at, None),
            ],
        )
        db.session.commit()
        rollup.roll_up(at + rollup.LAG)
    assert stored(MINUTE) == minute_counts(rollup.watermark())
    assert_hours_are_minute_sums()


def test_the_dashboard_equals_the_live_computation_before_and_after_the_roll_up(app):
    flows = make_flows(3)
    seed(flows)
    before = cards(NOW)  # no watermark yet: every figure is read live from runs
    assert_matches_reference(NOW, flows)
    rollup.roll_up(NOW)
    assert rollup.watermark() is not None and stored(HOUR)
    assert cards(NOW) == before
    assert_matches_reference(NOW, flows)
    # Later: the buckets stay, the tail after the watermark is live, the window moved.
    later = NOW + timedelta(minutes=47, seconds=13)
    assert_matches_reference(later, flows)
    health = dash.flow_health(flows[1])
    assert {k: health[k] for k in FIGURES} == cards(utcnow())[flows[1]]


def test_two_ticks_and_a_backfill_do_not_double_count(app):
    flows = make_flows(2)
    seed(flows)
    rollup.roll_up(NOW)
    first = (stored(MINUTE), stored(HOUR))
    again = rollup.roll_up(NOW)
    assert again.chunks == 0 and (stored(MINUTE), stored(HOUR)) == first
    report = rollup.backfill(NOW - timedelta(days=9), NOW)
    assert report.chunks >= 9  # a day per transaction at most
    assert (stored(MINUTE), stored(HOUR)) == first
    assert_matches_reference(NOW, flows)


def test_a_late_finish_counts_in_the_minute_it_finished(app):
    (fid,) = make_flows(1)
    received = NOW - timedelta(hours=3, seconds=30)
    db.session.execute(insert(Run), [_run(fid, "retrying", received, None)])
    db.session.commit()
    rollup.roll_up(NOW)
    three_hours_ago = floor_to(received, MINUTE)
    assert stored(MINUTE) == {(fid, three_hours_ago): minute_counts(NOW)[fid, three_hours_ago]}
    assert stored(MINUTE)[fid, three_hours_ago]["received"] == 1

    # The delivery retry succeeds after the roll-up passed the minute it was received in.
    done = NOW + timedelta(minutes=5, seconds=10)
    db.session.execute(update(Run).values(status="succeeded", finished_at=done))
    db.session.commit()
    rollup.roll_up(done + rollup.LAG + timedelta(minutes=1))
    minutes = stored(MINUTE)
    assert minutes[fid, three_hours_ago]["received"] == 1
    assert minutes[fid, three_hours_ago]["succeeded"] == 0
    late = minutes[fid, floor_to(done, MINUTE)]
    assert late["received"] == 0 and late["succeeded"] == 1
    assert late["last_success_at"] == done
    assert late["latency"][_latency_index((done - received).total_seconds())] == 1
    assert sum(late["latency"]) == 1
    card = dash.dashboard(now=done + timedelta(minutes=10))["flows"][0]
    assert card["runs_last_hour"] == 0 and card["success_rate"] == 1.0
    assert card["last_success_at"] == done


def test_a_replayed_dead_letter_keeps_its_failure_where_it_happened(app):
    (fid,) = make_flows(1)
    failed_at = NOW - timedelta(minutes=30)
    db.session.execute(
        insert(Run), [_run(fid, "dead_lettered", failed_at - timedelta(seconds=1), failed_at)]
    )
    db.session.commit()
    rollup.roll_up(NOW)
    replayed_at = NOW + timedelta(minutes=1)
    db.session.execute(update(Run).values(status="succeeded", finished_at=replayed_at))
    db.session.commit()
    rollup.roll_up(NOW + timedelta(minutes=5))
    minutes = stored(MINUTE)
    assert minutes[fid, floor_to(failed_at, MINUTE)]["dead_lettered"] == 1
    assert minutes[fid, floor_to(replayed_at, MINUTE)]["succeeded"] == 1
    card = dash.dashboard(now=NOW + timedelta(minutes=6))["flows"][0]
    assert card["dead_letters"] == 0  # now: nothing is dead-lettered
    assert card["failed_last_hour"] == 1 and card["success_rate"] == 0.5  # both happened
    # A backfill recomputes from what runs holds now: only the last finish is left.
    rollup.backfill(failed_at - timedelta(hours=1), NOW + timedelta(minutes=5))
    assert stored(MINUTE)[fid, floor_to(failed_at, MINUTE)]["dead_lettered"] == 0


def test_the_first_tick_starts_at_the_oldest_run_an_hour_at_a_time(app, monkeypatch):
    flows = make_flows(2)
    seed(flows, count=300)
    oldest = min(db.session.execute(select(Run.received_at)).scalars())
    report = rollup.roll_up(NOW, budget_seconds=0)  # one chunk, then the next beat goes on
    assert report.chunks == 1
    assert report.watermark == floor_to(oldest, HOUR) + timedelta(hours=1)
    assert_matches_reference(NOW, flows)  # half rolled up: the rest is read live
    rollup.roll_up(NOW)  # the next beat goes on from there
    assert rollup.watermark() == floor_to(NOW - rollup.LAG, MINUTE)
    assert_matches_reference(NOW, flows)


def test_a_beat_with_nothing_new_is_cheap(app):
    make_flows(1)
    rollup.roll_up(NOW)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(" ".join(statement.split()).upper())

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        same_minute = rollup.roll_up(NOW + timedelta(seconds=2))
        assert same_minute.chunks == 0
        assert len(statements) == 1 and statements[0].startswith("SELECT")  # the watermark
        statements.clear()
        next_minute = rollup.roll_up(NOW + timedelta(minutes=1))
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert next_minute.chunks == 1 and next_minute.buckets == 0
    # Peek, lock, watermark, the next-activity probe, move: no aggregation, no bucket rows.
    assert len(statements) == 5, statements
    assert not any("GROUP BY" in s or "RUN_STATS " in s for s in statements)


def test_retention_keeps_the_counts_and_old_buckets_age_out(app):
    flows = make_flows(2)
    seed(flows)
    old = NOW - timedelta(days=40)
    db.session.execute(
        insert(Run),
        [_run(flows[0], "succeeded", old, old + timedelta(seconds=2)) for _ in range(5)],
    )
    db.session.commit()
    rollup.roll_up(NOW)
    hours = stored(HOUR)
    assert hours[flows[0], floor_to(old, HOUR)]["succeeded"] == 5
    pruned = retention.prune(30, now=NOW)
    assert pruned.runs >= 5
    rollup.backfill(old - timedelta(days=1), NOW)  # recounted from the pruned runs
    assert stored(HOUR) == hours
    assert_matches_reference(NOW, flows)

    rollup.prune(400, now=NOW)
    assert min(at for _, at in stored(MINUTE)) >= NOW - timedelta(days=rollup.MINUTE_ROWS_DAYS)
    assert stored(HOUR) == hours  # hour rows stay 400 days
    rollup.prune(400, now=old + timedelta(days=400, hours=2))
    assert (flows[0], floor_to(old, HOUR)) not in stored(HOUR)


def test_tick_rolls_up_and_prunes(app):
    (fid,) = make_flows(1)
    ancient = utcnow() - timedelta(days=500)
    db.session.execute(insert(Run), [_run(fid, "succeeded", ancient, ancient)])
    db.session.commit()
    report = rollup.tick(app)
    assert report.chunks >= 1
    while rollup.tick(app).chunks:
        pass
    assert rollup.watermark() == floor_to(utcnow() - rollup.LAG, MINUTE)
    assert stored(HOUR) == {}  # 500 days old: rolled up, then pruned past 400 days
    assert rollup.tick(app).chunks == 0


def test_flask_rollup_backfill_command(app):
    flows = make_flows(1)
    seed(flows, count=120)
    result = app.test_cli_runner().invoke(args=["rollup", "backfill", "--since", "2020-01-01"])
    assert result.exit_code == 0, result.output
    assert "rolled up" in result.output
    assert rollup.watermark() == floor_to(utcnow() - rollup.LAG, MINUTE)
    bad = app.test_cli_runner().invoke(args=["rollup", "backfill", "--since", "yesterday"])
    assert bad.exit_code != 0


def test_two_concurrent_roll_ups_count_once(app, database_url, monkeypatch):
    if not database_url.startswith("postgresql"):
        pytest.skip("concurrent schedulers: PostgreSQL (SQLite serialises writers anyway)")
    flows = make_flows(3)
    seed(flows, count=3000)
    monkeypatch.setattr(rollup, "MAX_CHUNK", timedelta(hours=6))  # chunks to fight over
    recompute = rollup._recompute
    ranges: list[tuple[str, datetime, datetime]] = []

    def slow_recompute(start: datetime, end: datetime) -> int:
        ranges.append((threading.current_thread().name, start, end))
        time.sleep(0.02)  # hold the lock a while: the other scheduler must queue on it
        return recompute(start, end)

    monkeypatch.setattr(rollup, "_recompute", slow_recompute)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    reports = []

    def scheduler() -> None:
        with app.app_context():
            try:
                barrier.wait()
                reports.append(rollup.roll_up(NOW))
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=scheduler, name=f"scheduler-{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    cutoff = floor_to(NOW - rollup.LAG, MINUTE)
    assert [r.watermark for r in reports] == [cutoff, cutoff]
    assert {name for name, _, _ in ranges} == {"scheduler-0", "scheduler-1"}  # both worked
    # Each range once, one after the other: no minute was recounted, none was skipped.
    spans = sorted((start, end) for _, start, end in ranges)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert stored(MINUTE) == minute_counts(cutoff)
    assert_matches_reference(NOW, flows)


def test_runs_of_a_deleted_flow_leave_no_buckets(app):
    flows = make_flows(2)
    seed(flows, count=60)
    rollup.roll_up(NOW)
    db.session.delete(db.session.get(Flow, flows[1]))
    db.session.commit()
    assert {fid for fid, _ in stored(MINUTE)} == {flows[0]}
    assert {fid for fid, _ in stored(HOUR)} == {flows[0]}
