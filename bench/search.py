"""Business-key search on a big ledger: 1,000,000 runs in PostgreSQL, timed through the API.

    .venv/bin/python bench/search.py [--runs 1000000] [--lookups 200] [--pg-url URL] [--keep]

Creates the database ``flowgate_bench_search`` (dropped first if left over, and dropped at
the end unless ``--keep``), migrates it, seeds ``--runs`` runs of one flow, generated inside
PostgreSQL with INSERT … SELECT over generate_series (each run: an order number as business
key, one of 200,000 customers' e-mails, 3 of 50,000 SKUs; the search keys go to ``run_keys``
as intake writes them), ANALYZEs, then times ``GET /api/v1/runs?q=…``
through the Flask test client (view, schema, service, SQL: the real path; no HTTP server)
for exact order numbers, SKUs and customer e-mails, and prints p50/p99 per kind. A
measurement, not a test. See bench/README.md ("Business-key search").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench import scratch  # noqa: E402

DB_NAME = "flowgate_bench_search"
SKUS = 50_000
CUSTOMERS = 200_000
CHUNK = 100_000


def order_number(i: int) -> str:
    return f"WEB-{i:07d}"


# Deterministic "random" picks, the same in SQL and Python: run i's customer and SKUs.
# (SQL text goes through psycopg's %-placeholders: a literal % is written %%.)
CUSTOMER_OF = "(({i}::bigint * 7919) %% {customers})"
SKU_OF = (
    "(({i}::bigint * 31) %% {skus})",
    "(({i}::bigint * 131 + 17011) %% {skus})",
    "(({i}::bigint * 313 + 29) %% {skus})",
)


def email(n: int) -> str:
    return f"customer{n}@example.com"


def sku(n: int) -> str:
    return f"SKU-{n:05d}"


def customer_of(i: int) -> int:
    return (i * 7919) % CUSTOMERS


def skus_of(i: int) -> list[int]:
    return [(i * 31) % SKUS, (i * 131 + 17011) % SKUS, (i * 313 + 29) % SKUS]


def seed(url: str, runs: int) -> tuple[int, float]:
    """Generate the runs and their search keys inside PostgreSQL (INSERT … SELECT over
    generate_series, CHUNK runs per statement): no row crosses the wire, so a million runs
    take a minute or two instead of a quarter of an hour through COPY from Python."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    started = time.perf_counter()
    fmt = {"customers": CUSTOMERS, "skus": SKUS}
    customer = "'customer' || " + CUSTOMER_OF.format(i="i", **fmt) + " || '@example.com'"
    sku_sql = ["'SKU-' || lpad(" + s.format(i="i", **fmt) + "::text, 5, '0')" for s in SKU_OF]
    number = "'WEB-' || lpad(i::text, 7, '0')"
    with psycopg.connect(dsn) as conn:
        flow_id, version_id = conn.execute(
            "SELECT f.id, v.id FROM flows f JOIN flow_versions v ON v.flow_id = f.id"
        ).fetchone()
        for first in range(1, runs + 1, CHUNK):
            last = min(first + CHUNK - 1, runs)
            conn.execute(
                f"""
                INSERT INTO runs (id, flow_id, flow_version_id, trigger_kind, payload,
                    payload_hash, business_key, status, attempts, received_at, finished_at,
                    replays)
                SELECT i, %(flow)s, %(version)s, 'webhook',
                    jsonb_build_object(
                        'order_number', {number},
                        'customer', jsonb_build_object('email', {customer}),
                        'line_items', jsonb_build_array(
                            jsonb_build_object('sku', {sku_sql[0]}, 'quantity', 1),
                            jsonb_build_object('sku', {sku_sql[1]}, 'quantity', 1),
                            jsonb_build_object('sku', {sku_sql[2]}, 'quantity', 1))),
                    md5(i::text), {number},
                    CASE WHEN i %% 50 = 0 THEN 'dead_lettered' ELSE 'succeeded' END, 1,
                    now() AT TIME ZONE 'UTC' - make_interval(secs => (%(runs)s::int - i) * 2),
                    now() AT TIME ZONE 'UTC' - make_interval(secs => (%(runs)s::int - i) * 2)
                        + interval '120 milliseconds',
                    0
                FROM generate_series(%(first)s::int, %(last)s::int) AS i
                """,
                {
                    "flow": flow_id,
                    "version": version_id,
                    "runs": runs,
                    "first": first,
                    "last": last,
                },
            )
            # The keys intake would store (app.services.search_keys.extract): the business
            # key, the e-mail (lower case) and each SKU.
            conn.execute(
                f"""
                INSERT INTO run_keys (run_id, value)
                SELECT DISTINCT i, v FROM generate_series(%(first)s::int, %(last)s::int) AS i,
                    LATERAL (VALUES ({number}), ({customer}), ({sku_sql[0]}), ({sku_sql[1]}),
                                    ({sku_sql[2]})) AS k(v)
                """,
                {"first": first, "last": last},
            )
            conn.commit()
            print(f"  seeded {last:>9,} runs ({time.perf_counter() - started:6.1f} s)", flush=True)
        conn.execute("SELECT setval('runs_id_seq', %s)", (runs,))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE runs")
        conn.execute("VACUUM ANALYZE run_keys")
        keys = conn.execute("SELECT count(*) FROM run_keys").fetchone()[0]
    return keys, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def time_lookups(app, headers, kind: str, values: list[str]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    client = app.test_client()
    timings, totals = [], []
    for value in values:
        started = time.perf_counter()
        response = client.get("/api/v1/runs", query_string={"q": value}, headers=headers)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.get_data(as_text=True)
        totals.append(response.get_json()["total"])
    assert all(t >= 1 for t in totals), f"{kind}: a lookup found nothing"
    return {
        "p50_ms": round(percentile(timings, 0.5), 2),
        "p99_ms": round(percentile(timings, 0.99), 2),
        "max_ms": round(max(timings), 2),
        "mean_hits": round(statistics.mean(totals), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=200, help="lookups per kind")
    parser.add_argument(
        "--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test", help="admin URL"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    rng = random.Random(7)

    import tempfile

    from flask_migrate import upgrade

    url = scratch.create_database(args.pg_url, DB_NAME)
    try:
        with tempfile.TemporaryDirectory() as instance:
            app = scratch.make_app(url, Path(instance), "bench-search")
            with app.app_context():
                upgrade(directory=str(ROOT / "migrations"), revision="heads")
                from app.auth import issue_token
                from app.extensions import db
                from app.models import Flow, FlowVersion
                from app.services.users import create_user

                user = create_user("bench@example.test", "analyst", "bench-password-123")
                headers = {"Authorization": f"Bearer {issue_token(user)}"}
                flow = Flow(name="Bench orders", slug="bench-orders")
                db.session.add(flow)
                db.session.add(
                    FlowVersion(
                        flow=flow, number=1, status="live", definition={}, content_hash="bench"
                    )
                )
                db.session.commit()
                db.session.remove()
            print(f"seeding {args.runs:,} runs into {DB_NAME} …", flush=True)
            keys, seconds = seed(url, args.runs)
            print(f"seeded {args.runs:,} runs and {keys:,} search keys in {seconds:.1f} s")
            picks = [rng.randint(1, args.runs) for _ in range(args.lookups)]
            lookups = {
                "order number": [order_number(i) for i in picks],
                "SKU": [sku(skus_of(i)[rng.randrange(3)]) for i in picks],
                # Upper case on purpose: e-mails match whatever their case.
                "customer e-mail": [email(customer_of(i)).upper() for i in picks],
            }
            with app.app_context():
                # One warm-up per kind (first connection, compiled statements, page cache).
                results = {}
                for kind, values in lookups.items():
                    time_lookups(app, headers, kind, values[:5])
                    results[kind] = time_lookups(app, headers, kind, values)
                db.session.remove()
                db.engine.dispose()
            print(f"\nGET /api/v1/runs?q=… on {args.runs:,} runs ({args.lookups} lookups each)")
            print(f"{'kind':<16} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'hits/lookup':>12}")
            for kind, r in results.items():
                print(
                    f"{kind:<16} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8}"
                    f" {r['mean_hits']:>12}"
                )
            print(json.dumps({"runs": args.runs, "results": results}))
    finally:
        if not args.keep:
            scratch.drop_database(args.pg_url, DB_NAME)


if __name__ == "__main__":
    main()
