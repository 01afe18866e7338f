"""Where a message's cost goes, in process: SQL statements, commits and CPU per message.

    .venv/bin/python bench/profile_paths.py [--db sqlite|postgresql] [--messages 200]
        [--cprofile intake|worker] [--top 25]

Builds the app in this process on a fresh database (a SQLite file, or a PostgreSQL database
created through ``--pg-url`` and dropped at the end) and Redis db 12, sets up the bench flow
(webhook → filter → JSONata map → HTTP POST to a local sink) through the API with Flask's
test client, then measures two paths separately:

* intake: ``POST /hooks/<slug>`` through the test client (the Flask/smorest stack, the
  intake service, the commit and the enqueue), without gunicorn or sockets;
* worker: a non-forking RQ ``SimpleWorker`` in burst mode draining those runs (RQ's own
  bookkeeping, the claim, the engine, the sandboxed JSONata, the delivery ledger, the HTTP
  POST to the sink and the run's final write).

For each it prints SQL statements per message by kind and table, commits and pool checkouts
per message, and CPU ms per message of this process plus its JSONata sandbox children.
CPU ms per message is the figure that depends least on other users of the machine. The
PostgreSQL server's CPU is not included (``bench/throughput.py`` reports it).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

ORDER_DEFAULT = Path("/work/shared/fixtures/retail/commerce-order-created-20-lines.json")
PG_ADMIN_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_DEFAULT = "redis://127.0.0.1:6379/12"
_VERB = re.compile(r"^\s*(\w+)")
_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)


def _children_cpu() -> float:
    """CPU seconds of this process's live children (the JSONata sandboxes)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    me = str(os.getpid())
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if fields[1] == me:
                total += (int(fields[11]) + int(fields[12])) / tick
    return total


class SqlCounter:
    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.statements: Counter[str] = Counter()
        self.commits = 0
        self.checkouts = 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)
        event.listen(engine.pool, "checkout", self._checkout)

    def _statement(self, conn, cursor, statement, params, context, executemany) -> None:  # noqa: ANN001, PLR0913
        verb = (_VERB.match(statement) or [None, "?"])[1].upper()
        table = _TABLE.search(statement)
        many = " (executemany)" if executemany else ""
        self.statements[f"{verb} {table[1] if table else ''}{many}".strip()] += 1

    def _commit(self, conn) -> None:  # noqa: ANN001
        self.commits += 1

    def _checkout(self, *args: Any) -> None:
        self.checkouts += 1

    def count_driver_statements(self, modules: list[Any]) -> None:
        """Also count the statements of PostgreSQL's hot path, which runs at the driver
        (``app.stores.autocommitted``) and so never reaches the engine's events: each
        statement there is its own transaction, so it counts as a statement and a commit."""
        original = modules[0].autocommitted
        counter = self

        class CountingCursor:
            def __init__(self, cursor: Any) -> None:
                self._cursor = cursor

            def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
                counter._statement(None, None, str(statement), None, None, False)
                counter._commit(None)
                return self._cursor.execute(statement, *args, **kwargs)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._cursor, name)

        @contextlib.contextmanager
        def counted() -> Any:
            with original() as cursor:
                yield CountingCursor(cursor)

        for module in modules:
            module.autocommitted = counted

    def reset(self) -> None:
        self.statements.clear()
        self.commits = self.checkouts = 0

    def snapshot(self, n: int) -> dict[str, Any]:
        return {
            "statements_per_msg": round(sum(self.statements.values()) / n, 2),
            "commits_per_msg": round(self.commits / n, 2),
            "checkouts_per_msg": round(self.checkouts / n, 2),
            "by_statement": {k: round(v / n, 2) for k, v in self.statements.most_common()},
        }


def measure(label: str, n: int, counter: SqlCounter, fn: Any, prof: bool, top: int) -> dict:
    counter.reset()
    # CPU time, not wall clock: the figures stay meaningful on a shared, loaded machine (time
    # spent waiting for PostgreSQL, Redis, the sink or the sandbox child is not counted).
    profiler = cProfile.Profile(time.process_time) if prof else None
    cpu0, kids0, wall0 = time.process_time(), _children_cpu(), time.perf_counter()
    if profiler:
        profiler.enable()
    fn()
    if profiler:
        profiler.disable()
    cpu1, kids1, wall1 = time.process_time(), _children_cpu(), time.perf_counter()
    figures = counter.snapshot(n) | {
        "cpu_ms_per_msg": round(1000 * (cpu1 - cpu0) / n, 2),
        "sandbox_cpu_ms_per_msg": round(1000 * (kids1 - kids0) / n, 2),
        "wall_ms_per_msg": round(1000 * (wall1 - wall0) / n, 2),
    }
    print(f"\n== {label}: {n} messages", flush=True)
    for key, value in figures.items():
        if key != "by_statement":
            print(f"  {key:26} {value}")
    print(
        "  statements per message:  "
        + ", ".join(f"{k} {v}" for k, v in figures["by_statement"].items())
    )
    if profiler:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(top)
        stats.sort_stats("tottime").print_stats(top)  # own time: where the CPU is spent
        print(out.getvalue())
    return figures


def main() -> int:  # noqa: C901, PLR0915
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--order", type=Path, default=ORDER_DEFAULT)
    parser.add_argument("--pg-url", default=PG_ADMIN_DEFAULT)
    parser.add_argument("--redis-url", default=REDIS_DEFAULT)
    parser.add_argument("--cprofile", choices=("intake", "worker"), action="append", default=[])
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    from sqlalchemy import create_engine, text

    tmp = Path(tempfile.mkdtemp(prefix="flowgate-prof-"))
    pg_db = None
    if args.db == "sqlite":
        db_url = f"sqlite:///{tmp / 'flowgate.db'}"
    else:
        pg_db = f"flowgate_prof_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{pg_db}"'))
        db_url = f"{args.pg_url.rsplit('/', 1)[0]}/{pg_db}"
    queue_name = f"prof-{uuid.uuid4().hex[:8]}"
    try:
        return _run(args, db_url, tmp, queue_name)
    finally:
        with contextlib.suppress(Exception):
            from redis import Redis

            r = Redis.from_url(args.redis_url)
            for key in r.scan_iter(f"*{queue_name}*"):
                r.delete(key)
        if pg_db:
            admin.dispose()
            admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)'))
            admin.dispose()


def _run(args: argparse.Namespace, db_url: str, tmp: Path, queue_name: str) -> int:
    from flask_migrate import upgrade
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer
    from throughput import bench_contract, flow_definition

    from app import create_app, stores
    from app.auth import issue_token
    from app.extensions import db
    from app.queues import run_queue
    from app.redis_conn import get_redis
    from app.services import intake
    from app.services.users import create_user
    from app.worker import configure_engine
    from tests.support.sink import Sink

    app = create_app(
        {
            "SECRET_KEY": "bench-profile-secret-key-0123456789",
            "SQLALCHEMY_DATABASE_URI": db_url,
            "INSTANCE_PATH": str(tmp),
            "FLOWGATE_REDIS_URL": args.redis_url,
            "FLOWGATE_DEMO": False,
            "FLOWGATE_EGRESS_ALLOW": ["127.0.0.0/8"],
            "FLOWGATE_QUEUE_NAME": queue_name,
            # The burst drain measures runs only, not a lingering job's empty polls.
            "FLOWGATE_DRAIN_LINGER_SECONDS": 0,
        }
    )
    sink = Sink().start()
    body = args.order.read_bytes()
    n = args.messages
    try:
        with app.app_context():
            upgrade(directory=str(ROOT / "migrations"), revision="heads")
            headers = {}
            for role in ("analyst", "owner"):
                user = create_user(f"{role}@prof.local", role, "correct-horse-battery")
                headers[role] = {"Authorization": f"Bearer {issue_token(user)}"}
            db.session.remove()
        client = app.test_client()

        def call(method: str, path: str, role: str, body: Any = None, expect: int = 200) -> Any:
            resp = (
                client.open(path, method=method, json=body, headers=headers[role])
                if body is not None
                else client.open(path, method=method, headers=headers[role])
            )
            if resp.status_code != expect:
                raise RuntimeError(f"{method} {path} → {resp.status_code}: {resp.data[:500]!r}")
            return resp.get_json()

        connection = call(
            "POST",
            "/api/v1/connections",
            "analyst",
            {
                "name": "sink",
                "connector": "http",
                "config": {"base_url": sink.url, "auth": "none", "timeout_seconds": 10},
            },
            201,
        )
        flow = call("POST", "/api/v1/flows", "analyst", {"name": "Profile flow"}, 201)
        saved = call(
            "PUT",
            f"/api/v1/flows/{flow['id']}/draft",
            "analyst",
            {"definition": flow_definition(connection["id"])},
        )
        version = f"/api/v1/flows/{flow['id']}/versions/{saved['version']}"
        contract = bench_contract(
            lambda method, path, body, role, expect: call(method, path, role, body, expect)
        )
        call("POST", f"{version}/submit", "analyst", {"contract": contract})
        call("POST", f"{version}/approve", "owner", {"comment": "profile"})
        hook = f"/hooks/{flow['slug']}"

        with app.app_context():
            engine = db.engine
        counter = SqlCounter(engine)
        counter.count_driver_statements([stores, intake])
        configure_engine(app)

        def post(count: int) -> None:
            for _ in range(count):
                resp = client.post(hook, data=body, content_type="application/json")
                if resp.status_code != 202:
                    raise RuntimeError(f"webhook → {resp.status_code}: {resp.data[:500]!r}")

        def drain() -> None:
            with app.app_context():
                queue = run_queue(app)
            worker = SimpleWorker([queue], connection=get_redis(app), serializer=JSONSerializer)
            worker.work(burst=True, logging_level="WARNING")

        # Warm-up: imports, first compile, pools, caches.
        post(5)
        drain()
        sink.requests.clear()
        results = {
            "db": args.db,
            "intake": measure(
                "intake (test client → /hooks)",
                n,
                counter,
                lambda: post(n),
                "intake" in args.cprofile,
                args.top,
            ),
            "worker": measure(
                "worker (SimpleWorker burst)",
                n,
                counter,
                drain,
                "worker" in args.cprofile,
                args.top,
            ),
        }
        delivered = len(sink.requests)
        keys = Counter(r.headers.get("Idempotency-Key") for r in sink.requests)
        dup = sum(c - 1 for c in keys.values() if c > 1)
        print(f"\nsink: {delivered} delivered for {n} accepted; duplicate keys {dup}")
        results |= {"delivered": delivered, "duplicates": dup}
        if args.json_out:
            with args.json_out.open("a") as out:
                out.write(json.dumps(results) + "\n")
        return 0 if delivered == n and dup == 0 else 1
    finally:
        sink.stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
