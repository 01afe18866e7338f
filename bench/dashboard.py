"""Dashboard latency on a big ledger, before and after the run_stats roll-up (PostgreSQL).

    .venv/bin/python bench/dashboard.py [--runs 1000000] [--flows 10] [--repeat 15]
        [--baseline REV] [--pg-url URL] [--keep]

Creates the database ``flowgate_bench_dashboard`` (dropped first if left over, and at the
end unless ``--keep``), migrates it, seeds ``--runs`` runs over ``--flows`` flows inside
PostgreSQL (INSERT … SELECT over generate_series; one run every 2 s, so 1,000,000 runs
span 23 days and ~302,000 fall in the 7-day sparkline; 2 % dead-lettered, 4 % filtered,
1 % rejected, the last 200 in flight, one in 400 finishing two hours after it was
received), ANALYZEs, then times ``GET /api/v1/dashboard`` through the Flask test client:

- ``baseline``: with ``--baseline REV``, the app/services/dashboard.py of that git revision
  (everything computed live from ``runs``; e.g. 34362d0, before run_stats);
- ``live``: this code with an empty watermark (no roll-up yet: reads runs live);
- the first roll-up (the backfill the scheduler's first ticks do, here in one go);
- ``rolled up``: this code reading run_stats plus the runs after the watermark;
- a scheduler beat with nothing to do, and one a minute later.

A measurement, not a test. Set FLOWGATE_REDIS_URL to keep off a shared Redis db.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import text  # noqa: E402

from bench import scratch  # noqa: E402

DB_NAME = "flowgate_bench_dashboard"
CHUNK = 200_000
IN_FLIGHT = 200


def seed(url: str, runs: int) -> float:
    """Runs generated inside PostgreSQL: no row crosses the wire."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    started = time.perf_counter()
    status = f"""CASE WHEN i > %(runs)s - {IN_FLIGHT} THEN 'queued'
        WHEN i %% 50 = 0 THEN 'dead_lettered' WHEN i %% 25 = 1 THEN 'filtered'
        WHEN i %% 97 = 0 THEN 'rejected' ELSE 'succeeded' END"""
    received = "now() AT TIME ZONE 'UTC' - make_interval(secs => (%(runs)s::int - i) * 2)"
    latency = (
        "make_interval(secs => (i %% 1000) * 0.003 + CASE WHEN i %% 400 = 0 THEN 7200 ELSE 0 END)"
    )
    with psycopg.connect(dsn) as conn:
        flows = conn.execute(
            "SELECT f.id, v.id FROM flows f JOIN flow_versions v ON v.flow_id = f.id ORDER BY f.id"
        ).fetchall()
        flow_ids = "ARRAY[" + ",".join(str(f) for f, _ in flows) + "]"
        version_ids = "ARRAY[" + ",".join(str(v) for _, v in flows) + "]"
        n = len(flows)
        for first in range(1, runs + 1, CHUNK):
            last = min(first + CHUNK - 1, runs)
            conn.execute(
                f"""
                INSERT INTO runs (id, flow_id, flow_version_id, trigger_kind, payload,
                    payload_hash, status, attempts, received_at, finished_at, replays)
                SELECT i, ({flow_ids})[1 + i %% {n}], ({version_ids})[1 + i %% {n}],
                    'webhook', '{{}}'::jsonb, md5(i::text), {status}, 1, {received},
                    CASE WHEN i > %(runs)s - {IN_FLIGHT} THEN NULL
                        ELSE LEAST({received} + {latency}, now() AT TIME ZONE 'UTC') END,
                    0
                FROM generate_series(%(first)s::int, %(last)s::int) AS i
                """,
                {"runs": runs, "first": first, "last": last},
            )
            conn.commit()
            print(f"  seeded {last:>9,} runs ({time.perf_counter() - started:6.1f} s)", flush=True)
        conn.execute("SELECT setval('runs_id_seq', %s)", (runs,))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE runs")
    return time.perf_counter() - started


def load_baseline(rev: str):  # type: ignore[no-untyped-def]
    """The dashboard service module of another revision, imported under its own name."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:app/services/dashboard.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "dashboard_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("dashboard_baseline", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def time_dashboard(app, headers, repeat: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    client = app.test_client()
    timings = []
    for i in range(repeat + 1):
        started = time.perf_counter()
        response = client.get("/api/v1/dashboard", headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, response.get_data(as_text=True)
        if i:  # the first one warms the connection and the caches
            timings.append(elapsed)
    return {
        "p50_ms": round(statistics.median(timings), 1),
        "min_ms": round(min(timings), 1),
        "max_ms": round(max(timings), 1),
    }


def figures(app, headers) -> dict:  # type: ignore[no-untyped-def,type-arg]
    body = app.test_client().get("/api/v1/dashboard", headers=headers).get_json()
    return body["overall"]


def main() -> None:  # noqa: C901 - a linear script
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--flows", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=15, help="timed requests per variant")
    parser.add_argument("--baseline", default=None, help="git revision to time as 'before'")
    parser.add_argument(
        "--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test", help="admin URL"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    from flask_migrate import upgrade

    url = scratch.create_database(args.pg_url, DB_NAME)
    results: dict[str, object] = {"runs": args.runs, "flows": args.flows}
    try:
        with tempfile.TemporaryDirectory() as instance:
            app = scratch.make_app(url, instance, "bench-dashboard")
            with app.app_context():
                upgrade(directory=str(ROOT / "migrations"), revision="heads")
                from app.auth import issue_token
                from app.extensions import db
                from app.models import Flow, FlowVersion
                from app.services.users import create_user

                user = create_user("bench@example.test", "analyst", "bench-password-123")
                headers = {"Authorization": f"Bearer {issue_token(user)}"}
                for n in range(args.flows):
                    flow = Flow(name=f"Bench flow {n:02d}", slug=f"bench-{n:02d}")
                    db.session.add(flow)
                    db.session.add(
                        FlowVersion(
                            flow=flow, number=1, status="live", definition={}, content_hash="b"
                        )
                    )
                db.session.commit()
                db.session.remove()
            print(f"seeding {args.runs:,} runs over {args.flows} flows into {DB_NAME} …")
            results["seed_seconds"] = round(seed(url, args.runs), 1)
            with app.app_context():
                from app.api import dashboard as view
                from app.extensions import db
                from app.models import Run
                from app.models._types import utcnow
                from app.services import rollup

                week = db.session.execute(
                    text("SELECT count(*) FROM runs WHERE received_at >= :t"),
                    {"t": utcnow() - timedelta(days=7)},
                ).scalar()
                results["runs_in_7d"] = week
                # One instant for every variant: the figures are then comparable.
                from app.services import dashboard as service

                frozen = utcnow()
                service.utcnow = lambda: frozen  # type: ignore[attr-defined]
                if args.baseline:
                    current = view.service
                    view.service = load_baseline(args.baseline)
                    view.service.utcnow = lambda: frozen
                    results["baseline"] = time_dashboard(app, headers, args.repeat)
                    baseline_overall = figures(app, headers)
                    view.service = current
                results["live"] = time_dashboard(app, headers, args.repeat)
                started = time.perf_counter()
                report = rollup.roll_up()
                results["first_roll_up"] = {
                    "seconds": round(time.perf_counter() - started, 1),
                    "chunks": report.chunks,
                    "minute_buckets": report.buckets,
                }
                results["rolled_up"] = time_dashboard(app, headers, args.repeat)
                if args.baseline:
                    # Outcomes count by finish time now: runs finishing late move them.
                    new = figures(app, headers)
                    results["differs_from_baseline"] = {
                        k: [baseline_overall[k], new[k]]
                        for k in new
                        if k != "sparklines" and new[k] != baseline_overall[k]
                    }
                    for name in ("24h", "7d"):
                        for line in ("runs", "failed"):
                            old, now_ = (
                                baseline_overall["sparklines"][name][line],
                                new["sparklines"][name][line],
                            )
                            if old != now_:
                                results["differs_from_baseline"][f"{name}.{line} (sum)"] = [
                                    sum(old),
                                    sum(now_),
                                ]
                started = time.perf_counter()
                rollup.roll_up()
                results["beat_same_minute_ms"] = round((time.perf_counter() - started) * 1000, 2)
                started = time.perf_counter()
                beat = rollup.roll_up(utcnow() + timedelta(minutes=1))
                results["beat_next_minute_ms"] = round((time.perf_counter() - started) * 1000, 2)
                assert beat.chunks == 1
                assert db.session.query(Run).count() == args.runs
                db.session.remove()
                db.engine.dispose()
    finally:
        if not args.keep:
            scratch.drop_database(args.pg_url, DB_NAME)
    print(f"\nGET /api/v1/dashboard, {args.runs:,} runs ({results['runs_in_7d']:,} in 7 days)")
    for name in ("baseline", "live", "rolled_up"):
        if name in results:
            r = results[name]
            print(f"  {name:<10} p50 {r['p50_ms']:>8} ms  (min {r['min_ms']}, max {r['max_ms']})")
    print(f"  first roll-up: {results['first_roll_up']}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
