"""Flowgate end-to-end throughput: webhook → filter → JSONata map → HTTP POST to a counting sink.

    .venv/bin/python bench/throughput.py [--db sqlite|postgresql] [--workers N]
        [--connections C] [--seconds S] [--messages M] [--profile] [--json-out FILE]

Everything runs as real processes on this machine: a counting sink, gunicorn (web), N RQ
workers (``python -m app.worker``) and one scheduler, on a fresh database (a SQLite file in
a temp dir, or a PostgreSQL database created for the run and dropped afterwards) and a
unique queue on the local Redis. The flow is set up through the HTTP API of the running web
process, warmed up, then loaded in a closed loop (C clients, S seconds); the script waits
until every accepted run is final and prints figures (it is a measurement, not a test: the
exit status is 0 unless the benchmark itself could not run).

See bench/README.md for what each figure means and what was measured.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client as httpclient
import json
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])  # the processes need the venv
sys.path.insert(0, str(ROOT))

from bench import stack as shared  # noqa: E402
from bench.stack import StackError  # noqa: E402
from tests.support.contracts import contract_between  # noqa: E402
from tests.support.drafts import webhook_flow  # noqa: E402
from tests.support.processes import Proc, Processes, free_port, http, wait_for  # noqa: E402

PEERS = Path("/work/shared/bench-peers")
# The workload (#5): the retail fixture's 20-line order (8 KB); --order changes it.
# The peer figures in performance.md were measured with PEERS/order-20-lines.json (5.6 KB).
RETAIL_ORDER = Path("/work/shared/fixtures/retail/commerce-order-created-20-lines.json")
ORDER_FILE = (
    RETAIL_ORDER
    if RETAIL_ORDER.exists()
    else (
        PEERS / "order-20-lines.json"
        if (PEERS / "order-20-lines.json").exists()
        else BENCH / "order-20-lines.json"
    )
)
NODERED_FLOWS = PEERS / "nodered-flows.json"
NODERED_SETTINGS = PEERS / "nodered-settings.js"
# Where `npm install node-red@4.1.15` may have been run (first hit wins).
NODERED_HOMES = [
    Path(os.environ["FLOWGATE_NODERED_DIR"]) if os.environ.get("FLOWGATE_NODERED_DIR") else None,
    BENCH / "nodered",
    Path("/tmp/nodered-install"),
]
POST_LUA = PEERS / "post.lua" if (PEERS / "post.lua").exists() else BENCH / "post.lua"
NODE_SINK = PEERS / "sink.js"
PG_ADMIN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
# A Redis DB of its own: RQ job ids are "run-<id>" whatever the queue name, so two
# installations sharing one Redis DB share job hashes (see README, "Observations").
REDIS_DEFAULT = "redis://127.0.0.1:6379/12"
FINAL = ("succeeded", "dead_lettered", "filtered", "rejected")  # flows.results
DRAIN_CAP_SECONDS = 120.0

# The demo flow's mapping (app/demo/seed.py ORDER_TO_OMS), frozen here so that figures
# measured on different commits run the same workload.
ORDER_TO_OMS = """{
  'orderRef': 'WEB-' & $string(order_number),
  'orderedAt': created_at,
  'currency': currency,
  'customer': {
    'email': email,
    'name': customer.first_name & ' ' & customer.last_name
  },
  'shipTo': {
    'name': shipping_address.first_name & ' ' & shipping_address.last_name,
    'street': shipping_address.address1,
    'city': shipping_address.city,
    'postcode': shipping_address.zip,
    'country': shipping_address.country_code
  },
  'lines': [line_items.{
    'sku': sku,
    'quantity': quantity,
    'unitPrice': $number(price)
  }],
  'total': $number(total_price)
}"""


def flow_definition(connection_id: int) -> dict[str, Any]:
    """The demo flow (app/demo/seed.py demo_definition), pointed at the sink."""
    return webhook_flow(
        connection_id,
        mapping=ORDER_TO_OMS,
        retry={"max_attempts": 5, "backoff_seconds": 2, "max_backoff_seconds": 60},
        only_paid=True,
        layout=None,
    )


def bench_contract(call: Any) -> dict[str, Any]:
    """A complete integration contract (the review gate refuses a submission without one).

    ``call(method, path, body, role, expect)`` calls the API; systems are created as the
    owner, the owner is both business and technical owner."""
    source = call(
        "POST", "/api/v1/systems", {"name": "Bench shop", "kind": "commerce"}, "owner", 201
    )
    destination = call(
        "POST", "/api/v1/systems", {"name": "Bench OMS", "kind": "oms"}, "owner", 201
    )
    me = call("GET", "/api/v1/auth/me", None, "owner", 200)
    owner_id = (me.get("user") or me)["id"]
    return contract_between(
        source["id"],
        destination["id"],
        owner_id,
        volume_per_day=2000000,
        peak_per_minute=60000,
        error_policy={
            "max_attempts": 5,
            "max_age_seconds": 86400,
            "dead_letter_handling": "benchmark: none expected",
        },
        on_call={"name": "Bench", "email": "bench@example.test", "webhook_url": None},
    )


class BenchError(StackError):
    pass


def code_fingerprint() -> dict[str, str]:
    """Which code was measured (others edit concurrently and there is no git here)."""
    import hashlib

    digest = hashlib.sha256()
    newest = 0.0
    for top in ("app", "flows", "connectors", "migrations"):
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
                newest = max(newest, path.stat().st_mtime)
    return {
        "sha256": digest.hexdigest()[:12],
        "newest_source_mtime": datetime.fromtimestamp(newest, UTC).isoformat(timespec="seconds"),
    }


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


def epoch(dt: datetime) -> float:
    return dt.replace(tzinfo=UTC).timestamp()


# --------------------------------------------------------------------------- processes


def vm_hwm_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def vm_rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def family(pid: int) -> list[int]:
    """pid and its descendants (gunicorn master + its forked workers)."""
    try:
        import psutil

        proc = psutil.Process(pid)
        return [pid, *(c.pid for c in proc.children(recursive=True))]
    except Exception:
        return [pid]


def _is_sandbox(pid: int) -> bool:
    try:
        return b"flows.sandbox" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def postgres_cpu_seconds() -> float:
    """CPU of every local postgres server process (all databases: other users count too).

    Backends that exited are counted too: the postmaster reaps them, so their CPU is in its
    children's times. Without those, a connection closed during the run (a pool's overflow)
    took its backend's CPU out of the figure and into "not accounted"."""
    try:
        import psutil
    except ImportError:
        return 0.0
    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "postgres":
            with contextlib.suppress(Exception):
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
    return total


def background_load(seconds: float = 2.0) -> float:
    """Cores' worth of CPU busy on this machine before we start anything."""
    b0 = machine_busy()
    time.sleep(seconds)
    b1 = machine_busy()
    return (b1[0] - b0[0]) / max(1, b1[1] - b0[1]) * (os.cpu_count() or 1)


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


class Stack:
    """Every resource the run creates, released in ``close`` whatever happened."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="flowgate-bench-"))
        self.procs = Processes(self.tmp / "logs")
        self.pg_admin_url: str | None = None
        self.pg_db: str | None = None
        self.db_url = ""
        self.redis_url = args.redis_url
        self.queue = f"bench-{uuid.uuid4().hex[:10]}"
        self.web: Proc | None = None
        self.workers: list[Proc] = []
        self.scheduler: Proc | None = None
        self.sink: Proc | None = None
        self.sink_port = 0
        self.sink_kind = ""
        self.web_port = 0
        self.env: dict[str, str] = {}
        self.connection_id: int | None = None

    # ---- database
    def create_database(self) -> None:
        if self.args.db == "sqlite":
            instance = self.tmp / "instance"
            instance.mkdir()
            self.db_url = f"sqlite:///{instance / 'flowgate.db'}"
            return
        self.pg_admin_url = shared.psycopg_url(self.args.pg_url)
        self.pg_db = f"flowgate_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.db_url = shared.create_database(self.pg_admin_url, self.pg_db)

    def drop_database(self) -> None:
        if not self.pg_db or not self.pg_admin_url:
            return
        shared.drop_database(self.pg_admin_url, self.pg_db)
        self.pg_db = None

    # ---- processes
    def start_sink(self) -> None:
        self.sink_port = free_port()
        use_node = self.args.sink == "node" or (
            self.args.sink == "auto" and NODE_SINK.exists() and shutil.which("node")
        )
        if use_node:
            argv = ["node", str(NODE_SINK), str(self.sink_port)]
            self.sink_kind = "node sink.js"
        else:
            argv = [sys.executable, str(BENCH / "sink.py"), str(self.sink_port)]
            self.sink_kind = "python bench/sink.py"
        env = dict(os.environ, SINK_FINAL=str(self.tmp / "sink-final.json"))
        self.sink = self.procs.start("sink", argv, env, cwd=self.tmp)
        wait_for(
            lambda: self.sink_stats() is not None,
            timeout=15,
            what="the sink",
            on_timeout=self.procs.logs,
        )

    def sink_stats(self) -> dict[str, Any] | None:
        status, _, body = http("GET", f"http://127.0.0.1:{self.sink_port}/stats", timeout=5)
        return json.loads(body) if status == 200 else None

    def sink_reset(self) -> None:
        http("GET", f"http://127.0.0.1:{self.sink_port}/reset", timeout=5)

    def start_app(self) -> None:
        self.web_port = free_port()
        self.env = shared.app_env(self, FLOWGATE_LOG_LEVEL=self.args.log_level)
        log(f"migrating {self.args.db} database")
        shared.flask(self.env, "db", "upgrade", "heads", timeout=120)
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{self.web_port}",
            "--workers",
            str(self.args.web_workers),
            "--threads",
            str(self.args.web_threads),
            "--graceful-timeout",
            "2",
            "--no-control-socket",
            "--log-level",
            "warning",
            "app:create_app()",
        ]
        self.web = self.procs.start("web", argv, self.env)
        for _ in range(self.args.workers):
            self.workers.append(self.procs.worker(self.env))
        self.scheduler = self.procs.scheduler(self.env)

        shared.wait_healthy(self.procs, self.base, timeout=60)
        shared.wait_workers(self.procs, self.redis_url, self.queue, self.args.workers, timeout=60)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def stop_processes(self) -> None:
        shared.stop_gracefully(self.procs)

    def clean_redis(self) -> None:
        """Delete only this run's keys: its queue, registries, jobs and worker records."""
        import redis

        try:
            client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2)
            doomed: list[bytes] = list(client.scan_iter(match=f"rq:*{self.queue}*", count=1000))
            mine = self.queue.encode()
            doomed += client.scan_iter(match=f"flowgate:wake:{self.queue}:*", count=1000)
            for key in client.scan_iter(match="rq:job:*", count=1000):  # drain jobs: uuid ids
                if client.type(key) == b"hash" and client.hget(key, "origin") == mine:
                    job_id = key.decode().rsplit(":", 1)[1]
                    doomed += [key, *client.scan_iter(match=f"rq:*:{job_id}", count=1000)]
            for key in client.scan_iter(match="rq:worker:*", count=1000):
                if client.type(key) == b"hash" and client.hget(key, "queues") == mine:
                    doomed.append(key)
                    client.srem("rq:workers", key)
            client.srem("rq:queues", f"rq:queue:{self.queue}")
            if self.connection_id is not None and self.redis_url == REDIS_DEFAULT:
                # app.gates keys are named by connection id only (not by installation), so
                # they are ours only in the bench's own Redis DB.
                doomed += client.scan_iter(match=f"flowgate:gate:{self.connection_id}:*")
            for i in range(0, len(doomed), 500):
                client.delete(*doomed[i : i + 500])
            client.close()
        except Exception as exc:  # never let cleanup hide the real outcome
            log(f"redis cleanup incomplete: {exc!r}")

    def close(self, keep: bool) -> None:
        with contextlib.suppress(Exception):
            self.stop_processes()
        self.clean_redis()
        try:
            self.drop_database()
        except Exception as exc:
            log(f"could not drop {self.pg_db}: {exc!r}")
        if keep:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------- API set-up


class Api(shared.Api):
    def total(self, status: str | None = None) -> int:
        query = f"?limit=1&status={status}" if status else "?limit=1"
        return int(self.call("GET", f"/api/v1/runs{query}")["total"])


def set_up_flow(stack: Stack) -> tuple[str, Api]:
    password = secrets.token_urlsafe(12)
    analyst, owner = (
        Api(stack.base, shared.user_token(stack.env, role, f"{role}@bench.local", password), 30)
        for role in ("analyst", "owner")
    )
    connection = analyst.call(
        "POST",
        "/api/v1/connections",
        {
            "name": "Counting sink (OMS stand-in)",
            "connector": "http",
            "config": {
                "base_url": f"http://127.0.0.1:{stack.sink_port}",
                "auth": "none",
                "timeout_seconds": 10,
            },
        },
        expect=201,
    )
    stack.connection_id = connection["id"]
    flow = analyst.call("POST", "/api/v1/flows", {"name": "Bench: web orders → OMS"}, expect=201)
    saved = analyst.call(
        "PUT",
        f"/api/v1/flows/{flow['id']}/draft",
        {"definition": flow_definition(connection["id"])},
    )
    if saved.get("problems"):
        raise BenchError(f"the draft has problems: {saved['problems']}")
    version = f"/api/v1/flows/{flow['id']}/versions/{saved['version']}"
    apis = {"analyst": analyst, "owner": owner}
    contract = bench_contract(
        lambda method, path, body, role, expect: apis[role].call(method, path, body, expect)
    )
    analyst.call("POST", f"{version}/submit", {"contract": contract})
    owner.call("POST", f"{version}/approve", {"comment": "benchmark"})
    return flow["slug"], analyst


# --------------------------------------------------------------------------- load


class PythonLoad:
    """Closed loop: C threads, each with one keep-alive http.client connection."""

    def __init__(self, port: int, path: str, body: bytes, rate: float | None = None) -> None:
        self.port, self.path, self.body = port, path, body
        self.headers = {"Content-Type": "application/json"}
        # Paced (open loop): the clients together send ``rate`` requests/s, each on its own
        # schedule; a late answer delays only that client's next request.
        self.rate = rate

    def run(self, connections: int, seconds: float, messages: int | None) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        interval = connections / self.rate if self.rate else 0.0
        lock = threading.Lock()
        budget = [messages]
        results: list[list[tuple[float, float, int]]] = [[] for _ in range(connections)]

        def take() -> bool:
            if budget[0] is None:
                return True
            with lock:
                if budget[0] <= 0:
                    return False
                budget[0] -= 1
                return True

        def client(out: list[tuple[float, float, int]], offset: float) -> None:
            conn = httpclient.HTTPConnection("127.0.0.1", self.port, timeout=30)
            due = time.monotonic() + offset
            while time.monotonic() < deadline and take():
                if interval:
                    pause = due - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    due += interval
                t0 = time.perf_counter()
                try:
                    conn.request("POST", self.path, self.body, self.headers)
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                except (OSError, httpclient.HTTPException):
                    status = -1
                    conn.close()
                    conn = httpclient.HTTPConnection("127.0.0.1", self.port, timeout=30)
                out.append((time.time(), time.perf_counter() - t0, status))
            conn.close()

        threads = [
            threading.Thread(target=client, args=(r, i * interval / connections), daemon=True)
            for i, r in enumerate(results)
        ]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        rows = [r for per in results for r in per]
        ok = [r for r in rows if r[2] in (200, 202)]
        latencies = [r[1] * 1000 for r in ok]
        return {
            "generator": "python http.client threads"
            + (f", paced at {self.rate:g} req/s" if self.rate else ", closed loop"),
            "duration_s": elapsed,
            "requests": len(rows),
            "accepted_responses": len(ok),
            "statuses": dict(Counter(r[2] for r in rows)),
            "p50_ms": pct(latencies, 50),
            "p90_ms": pct(latencies, 90),
            "p99_ms": pct(latencies, 99),
            "max_ms": max(latencies) if latencies else None,
        }


# --------------------------------------------------------------------------- Node-RED


def find_node_red() -> Path | None:
    for home in NODERED_HOMES:
        if home is not None and (home / "node_modules" / "node-red" / "red.js").exists():
            return home / "node_modules" / "node-red" / "red.js"
    return None


def nodered_run(stack: Stack, body: bytes) -> dict[str, Any] | None:
    """The same integration in Node-RED (PEERS), same order, same load, its own node sink.

    Node-RED answers 202 from a parallel branch and keeps nothing, so "accepted" there means
    only "answered"; delivered/s is its sink's count over first→last delivery."""
    args = stack.args
    red = find_node_red()
    if red is None or not shutil.which("node") or not NODERED_FLOWS.exists():
        log(
            "Node-RED not found (npm install node-red@4.1.15 in bench/nodered or "
            "$FLOWGATE_NODERED_DIR): no side-by-side run"
        )
        return None
    sink_port, port = free_port(), free_port()
    sink = stack.procs.start(
        "nodered-sink", ["node", str(NODE_SINK), str(sink_port)], dict(os.environ), cwd=stack.tmp
    )
    userdir = stack.tmp / "nodered"
    userdir.mkdir(exist_ok=True)
    (userdir / "flows.json").write_text(
        NODERED_FLOWS.read_text().replace("127.0.0.1:9900", f"127.0.0.1:{sink_port}")
    )
    env = dict(os.environ, NR_USERDIR=str(userdir), PORT=str(port))
    proc = stack.procs.start(
        "node-red", ["node", str(red), "-s", str(NODERED_SETTINGS)], env, cwd=userdir
    )
    base_stats = f"http://127.0.0.1:{sink_port}"

    def stats() -> dict[str, Any]:
        status, _, raw = http("GET", f"{base_stats}/stats", timeout=5)
        return json.loads(raw) if status == 200 else {}

    try:
        wait_for(
            lambda: (
                http(
                    "POST",
                    f"http://127.0.0.1:{port}/order",
                    body=body,
                    headers={"Content-Type": "application/json"},
                    timeout=5,
                )[0]
                == 202
            ),
            timeout=60,
            what="Node-RED",
            interval=0.5,
            on_timeout=stack.procs.logs,
        )
        warm = args.warmup or 20
        PythonLoad(port, "/order", body).run(min(args.connections, warm), 60, warm)
        wait_for(lambda: stats().get("count", 0) >= warm, timeout=30, what="Node-RED warm-up")
        http("GET", f"{base_stats}/reset", timeout=5)
        rss0 = vm_rss_kb(proc.pid)
        cpu0 = cpu_seconds([proc.pid])
        log(f"Node-RED: load {args.connections} connections, {args.seconds:g} s")
        load = PythonLoad(port, "/order", body, rate=args.rate).run(
            args.connections, args.seconds, args.messages
        )
        settle_until, last = time.monotonic() + 30, -1
        while time.monotonic() < settle_until:
            count = stats().get("count", 0)
            if count == last and count >= load["accepted_responses"]:
                break
            last = count
            time.sleep(1.0)
        final = stats()
        cpu = cpu_seconds([proc.pid]) - cpu0
        span = ((final.get("last") or 0) - (final.get("first") or 0)) / 1000
        delivered = int(final.get("count", 0))
        return {
            "load": load,
            "accepted": load["accepted_responses"],
            "accepted_per_s": load["accepted_responses"] / load["duration_s"],
            "delivered": delivered,
            "delivered_per_s": delivered / span if span > 0 else None,
            "lost": max(0, load["accepted_responses"] - delivered),
            "sink_bad": final.get("bad"),
            "rss_kb": (rss0, vm_rss_kb(proc.pid)),
            "peak_kb": vm_hwm_kb(proc.pid),
            "cpu_ms_per_msg": 1000 * cpu / max(1, delivered),
        }
    finally:
        for p in (proc, sink):
            if p.alive():
                p.signal_group(signal.SIGTERM)
            p.expected_dead = True


def wrk_load(stack: Stack, path: str, connections: int, seconds: float) -> dict[str, Any]:
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{int(seconds)}s",
        "--timeout",
        "30s",
        "-s",
        str(POST_LUA),
        stack.base + path,
    ]
    env = dict(os.environ, ORDER_FILE=str(ORDER_FILE))
    started = time.perf_counter()
    proc = stack.procs.start("wrk", argv, env, cwd=stack.tmp)
    proc.popen.wait(timeout=seconds + 60)
    proc.expected_dead = True  # done, not crashed: check_alive must ignore it
    elapsed = time.perf_counter() - started
    output = proc.log_path.read_text()
    match = re.search(r"^JSON (\{.*\})$", output, re.MULTILINE)
    if proc.popen.returncode != 0 or not match:
        raise BenchError(f"wrk failed:\n{output}")
    summary = json.loads(match.group(1))
    return {
        "generator": "wrk -t1 (post.lua)",
        "duration_s": summary["duration_us"] / 1e6 if summary["duration_us"] else elapsed,
        "requests": summary["requests"],
        "accepted_responses": summary["requests"] - summary["non2xx"],
        "statuses": {
            "non2xx": summary["non2xx"],
            "socket errors": sum(summary[k] for k in ("connect", "read", "write", "timeout")),
        },
        "p50_ms": summary["p50_ms"],
        "p90_ms": summary["p90_ms"],
        "p99_ms": summary["p99_ms"],
        "max_ms": summary["max_ms"],
    }


# --------------------------------------------------------------------------- measurements


def db_size_bytes(stack: Stack, engine: Any) -> int:
    from sqlalchemy import text

    if stack.args.db == "sqlite":
        path = Path(stack.db_url.split("sqlite:///", 1)[1])
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar())


def pg_tables(engine: Any) -> dict[str, int]:
    from sqlalchemy import text

    with engine.connect() as conn:
        return {
            t: int(conn.execute(text(f"SELECT pg_total_relation_size('{t}')")).scalar())
            for t in ("runs", "run_steps", "deliveries")
        }


def pg_counters(engine: Any) -> dict[str, int]:
    """Cumulative transaction/row counters of this database (all processes together)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_force_next_flush()"))
        row = conn.execute(
            text(
                "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, "
                "tup_returned, blks_read, blks_hit FROM pg_stat_database "
                "WHERE datname = current_database()"
            )
        ).one()
        counters = dict(
            zip(
                (
                    "commits",
                    "rollbacks",
                    "inserted",
                    "updated",
                    "deleted",
                    "returned",
                    "blks_read",
                    "blks_hit",
                ),
                (int(v) for v in row),
                strict=True,
            )
        )
        for name, ins, upd, dele in conn.execute(
            text("SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables")
        ):
            counters[f"{name}.ins"], counters[f"{name}.upd"] = int(ins), int(upd)
            counters[f"{name}.del"] = int(dele)
    return counters


def run_figures(engine: Any, after_id: int) -> dict[str, Any]:
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT status, received_at, started_at, finished_at, attempts FROM runs "
                "WHERE id > :after"
            ),
            {"after": after_id},
        ).all()
        steps = conn.execute(
            text(
                "SELECT s.step_id, AVG(s.duration_ms), COUNT(*) FROM run_steps s "
                "WHERE s.run_id > :after GROUP BY s.step_id"
            ),
            {"after": after_id},
        ).all()
        deliveries = conn.execute(
            text(
                "SELECT COUNT(*), COALESCE(SUM(attempts), 0), "
                "COALESCE(SUM(CASE WHEN attempts > 1 THEN 1 ELSE 0 END), 0) FROM deliveries "
                "WHERE run_id > :after"
            ),
            {"after": after_id},
        ).one()

    def parse(v: Any) -> datetime | None:
        if v is None or isinstance(v, datetime):
            return v
        return datetime.fromisoformat(str(v))  # SQLite returns text for raw SQL

    e2e, wait, work = [], [], []
    received = []
    for _, rec, sta, fin, _ in rows:
        rec, sta, fin = parse(rec), parse(sta), parse(fin)
        received.append(rec)
        if fin is not None:
            e2e.append((fin - rec).total_seconds() * 1000)
        if sta is not None:
            wait.append((sta - rec).total_seconds() * 1000)
            if fin is not None:
                work.append((fin - sta).total_seconds() * 1000)
    return {
        "runs": len(rows),
        "by_status": dict(Counter(r[0] for r in rows)),
        "attempts_gt_1": sum(1 for r in rows if (r[4] or 0) > 1),
        "first_received": min(received) if received else None,
        "e2e_ms": {
            "p50": pct(e2e, 50),
            "p95": pct(e2e, 95),
            "p99": pct(e2e, 99),
            "max": max(e2e) if e2e else None,
        },
        "queue_wait_ms_p50": pct(wait, 50),
        "claim_to_finish_ms_p50": pct(work, 50),
        "step_avg_ms": {s: round(float(avg), 2) for s, avg, _ in steps},
        "deliveries": int(deliveries[0]),
        "delivery_attempts": int(deliveries[1]),
        "deliveries_retried": int(deliveries[2]),
    }


# --------------------------------------------------------------------------- profile


PHASES = (  # (file, function) → phase; the innermost matching frame of a run's stack decides
    ("app/stores.py", "SqlRunStore.claim", "claim the run (SQL)"),
    ("app/stores.py", "SqlRunStore.finish", "finish the run + write its steps (SQL)"),
    ("app/stores.py", "SqlConnectionResolver.resolve", "load connection + decrypt secrets"),
    ("connectors/http.py", "", "HTTP POST to the destination"),
    ("app/stores.py", "SqlDeliveryLedger.", "delivery ledger rows (SQL)"),
    ("flows/engine.py", "FlowRunner._map", "map step (JSONata)"),
    ("flows/engine.py", "FlowRunner._filter", "filter step (JSONata)"),
    ("flows/definition.py", "", "parse the flow definition"),
    ("app/gates.py", "", "delivery gate: breaker + limits (Redis)"),
)
SQL_COMMIT = "SQL COMMIT (in the driver: fsync on SQLite, round trip on PG)"
SQL_EXECUTE = "SQL statements (in the driver, waiting for the database)"
LIBRARIES = (  # (file fragment, function fragment) → where the time is, innermost frame first
    ("sqlalchemy", "", "SQLAlchemy Python (ORM/Core)"),
    ("flows/sandbox.py", "", "JSONata sandbox: IPC + waiting for the child"),
    ("jsonata", "", "JSONata evaluation"),
    ("flows/mapping.py", "", "JSONata evaluation"),
    ("json/", "", "json encode/decode"),
    ("cryptography", "", "Fernet decrypt"),
    ("urllib3", "", "HTTP client (requests/urllib3)"),
    ("requests/", "", "HTTP client (requests/urllib3)"),
    ("http/client", "", "HTTP client (requests/urllib3)"),
    ("connectors/", "", "HTTP client (requests/urllib3)"),
    ("redis/", "", "Redis client (RQ, gates)"),
    ("rq/", "", "RQ"),
    ("logging/", "", "logging"),
)
IDLE = "idle: waiting for the next job (Redis)"


def _frame(frame: str) -> tuple[str, str]:
    m = re.match(r"(.*?) \((.*?)(?::\d+)?\)$", frame)
    return (m.group(1), m.group(2)) if m else (frame, "")


def _library(frames: list[tuple[str, str]]) -> str:
    if any(func.endswith("do_commit") for func, _ in frames):
        return SQL_COMMIT
    leaf_func, leaf_file = frames[-1]
    if leaf_func.endswith(("do_execute", "do_executemany")) or "psycopg" in leaf_file:
        return SQL_EXECUTE
    for func, file in reversed(frames):
        for frag, fn, name in LIBRARIES:
            if _package(frag, file) and fn in func:
                return name
    return "other Python"


def _package(frag: str, file: str) -> bool:
    """``frag`` in ``file``; a fragment ending in "/" must start a path component."""
    if not frag.endswith("/"):
        return frag in file
    return file.startswith(frag) or f"/{frag}" in file


def summarise_profile(path: Path) -> dict[str, Any]:
    """py-spy raw (collapsed) stacks of the worker's main thread → time by phase and library."""
    phases: Counter[str] = Counter()
    libs: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";")]
        if not any(file.endswith("app/worker.py") for _, file in frames):
            continue  # not the worker's main thread
        total += n
        in_run = any(file.endswith("flows/execution.py") for _, file in frames)
        in_job = any(func.endswith("perform_job") for func, _ in frames)
        if in_run:
            phase = "other per-run work"
            for func, file in reversed(frames):
                hit = next(
                    (p for frag, fn, p in PHASES if file.endswith(frag) and func.startswith(fn)),
                    None,
                )
                if hit:
                    phase = hit
                    break
        elif in_job:
            phase = "RQ job bookkeeping (status, registries)"
        else:
            phase = (
                IDLE
                if frames[-1][1].endswith(("redis/_parsers/socket.py", "socket.py"))
                else "RQ worker loop (dequeue, heartbeat)"
            )
        phases[phase] += n
        if phase == IDLE:
            continue
        libs[_library(frames)] += n
    return {"samples": total, "phases": phases, "libraries": libs}


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--workers", type=int, default=2, help="RQ worker processes")
    p.add_argument("--connections", type=int, default=10, help="concurrent closed-loop clients")
    p.add_argument("--seconds", type=float, default=20, help="load duration")
    p.add_argument(
        "--messages",
        type=int,
        default=None,
        help="stop after this many requests (uses the Python load generator)",
    )
    p.add_argument("--warmup", type=int, default=40, help="messages sent and drained first")
    p.add_argument("--web-workers", type=int, default=2)
    p.add_argument("--web-threads", type=int, default=4)
    p.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--sink", choices=("auto", "node", "python"), default="auto")
    p.add_argument("--redis-url", default=REDIS_DEFAULT)
    p.add_argument("--pg-url", default=PG_ADMIN_DEFAULT, help="admin URL (CREATE DATABASE)")
    p.add_argument("--log-level", default="WARNING", help="FLOWGATE_LOG_LEVEL for the processes")
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy (wall clock, idle included) on the first worker",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=180,
        metavar="S",
        help="wait up to S seconds for other processes to leave the CPU idle",
    )
    p.add_argument(
        "--keep-profile",
        type=Path,
        metavar="DIR",
        help="copy the raw py-spy stacks (collapsed format) into DIR",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="R",
        help="pace the Python load generator at R requests/s in total (open loop; "
        "e.g. --rate 200 for the intake p99 target) instead of a closed loop",
    )
    p.add_argument("--order", type=Path, default=ORDER_FILE, help="the JSON body to send")
    p.add_argument(
        "--peer",
        choices=("auto", "nodered", "none"),
        default="auto",
        help="also run Node-RED (PEERS kit) with the same load and print the ratio "
        "(auto: if installed)",
    )
    p.add_argument(
        "--sql-profile",
        action="store_true",
        help="also run bench/profile_paths.py: SQL statements, commits and CPU ms "
        "per message of the intake and worker paths, in process",
    )
    p.add_argument("--json-out", type=Path, help="append the figures as one JSON line")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, SQLite file)")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    stack = Stack(args)
    failed = True
    try:
        figures = bench(stack)
        report(args, stack, figures)
        if args.json_out:
            with args.json_out.open("a") as handle:
                handle.write(json.dumps(figures, default=str) + "\n")
        failed = False
        return 0
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        return 130
    except (StackError, AssertionError) as exc:
        log(f"benchmark failed: {exc}")
        if isinstance(exc, StackError):
            log(stack.procs.logs(tail=30))
        return 1
    finally:
        if failed:
            log(f"logs in {stack.tmp / 'logs'} are removed now; rerun with --keep to keep them")
        stack.close(keep=args.keep)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C


def bench(stack: Stack) -> dict[str, Any]:  # noqa: C901 - one linear script
    args = stack.args
    from sqlalchemy import create_engine, func, select, text  # noqa: F401

    body = args.order.read_bytes()
    code = code_fingerprint()
    quiet = background_load()
    waited_until = time.monotonic() + args.quiet_wait
    while quiet > 0.25 and time.monotonic() < waited_until:
        log(f"the machine is busy ({quiet:.2f} cores in use by others): waiting for quiet")
        quiet = background_load(5.0)
    if quiet > 0.25:
        log(f"warning: the machine is busy before the run ({quiet:.2f} cores): figures are noisy")
    stack.create_database()
    stack.start_sink()
    stack.start_app()
    engine = create_engine(shared.psycopg_url(stack.db_url))
    slug, api = set_up_flow(stack)
    path = f"/hooks/{slug}"
    log(
        f"{args.db}, {args.workers} worker(s), web {args.web_workers}x{args.web_threads}, "
        f"sink: {stack.sink_kind}, flow /hooks/{slug}"
    )

    baseline_size = db_size_bytes(stack, engine)
    # Warm-up: first JSONata import and compile in each worker, pools, caches.
    if args.warmup:
        warm = PythonLoad(stack.web_port, path, body).run(
            min(args.connections, args.warmup), 60, args.warmup
        )
        if warm["accepted_responses"] != args.warmup:
            raise BenchError(f"warm-up: {warm['statuses']}")
        wait_for(
            lambda: api.total("succeeded") >= args.warmup,
            timeout=60,
            what="the warm-up runs",
            interval=0.2,
            on_timeout=stack.procs.logs,
        )
    with engine.connect() as conn:
        after_id = int(conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM runs")).scalar())
    warm_runs = api.total()
    stack.sink_reset()
    stack.procs.check_alive()

    roles = {
        "web": lambda: family(stack.web.pid),
        "workers": lambda: [pid for w in stack.workers for pid in family(w.pid)],
        "scheduler": lambda: [stack.scheduler.pid],
        "sink": lambda: [stack.sink.pid],
    }
    rss_start = [vm_rss_kb(w.pid) for w in stack.workers]
    pg0 = pg_counters(engine) if args.db == "postgresql" else None
    cpu0 = {role: cpu_seconds(pids()) for role, pids in roles.items()}
    if args.db == "postgresql":
        roles["postgres (server, all dbs)"] = lambda: []
        cpu0["postgres (server, all dbs)"] = postgres_cpu_seconds()
    self0 = os.times()
    busy0 = machine_busy()

    profilers: dict[str, Proc] = {}
    if args.profile:
        spy = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
        if Path(spy).exists():
            # Wall clock on worker 1, blocked time included: a worker is one thread running
            # one job at a time, so where its wall time goes is what bounds its throughput.
            # (py-spy's idle detection misses waits inside C extensions such as psycopg's,
            # so an "on CPU" profile would not be one; CPU totals come from /proc instead.)
            profilers["wall"] = stack.procs.start(
                "py-spy",
                [
                    spy,
                    "record",
                    "--pid",
                    str(stack.workers[0].pid),
                    "--idle",
                    "--nonblocking",
                    "--rate",
                    "100",
                    "--format",
                    "raw",
                    "--output",
                    str(stack.tmp / "profile-wall.txt"),
                ],
                dict(os.environ),
                cwd=stack.tmp,
            )
        else:
            log("py-spy not found: no profile (pip install py-spy)")

    use_wrk = args.loadgen == "wrk" or (
        args.loadgen == "auto"
        and shutil.which("wrk")
        and args.messages is None
        and args.rate is None
    )
    log(
        f"load: {args.connections} connections, {args.seconds:g} s"
        + (f", at most {args.messages} messages" if args.messages else "")
        + f", {'wrk' if use_wrk else 'python'} load generator"
    )
    load_started_wall = time.time()
    if use_wrk:
        load = wrk_load(stack, path, args.connections, args.seconds)
    else:
        load = PythonLoad(stack.web_port, path, body, rate=args.rate).run(
            args.connections, args.seconds, args.messages
        )
    load_ended_wall = time.time()
    at_load_end = stack.sink_stats() or {}
    log(
        f"load done: {load['accepted_responses']} accepted responses, "
        f"{at_load_end.get('count', 0)} delivered so far; draining"
    )

    drain_deadline = time.monotonic() + DRAIN_CAP_SECONDS
    while True:
        stack.procs.check_alive()
        # The ledger is the count of accepted messages (a run is committed before its 202);
        # wrk may have cut off requests in flight that the server still accepted.
        accepted = api.total() - warm_runs
        final = sum(api.total(s) for s in FINAL) - warm_runs
        if (
            final >= accepted and time.time() - load_ended_wall > 1.0
        ) or time.monotonic() > drain_deadline:
            break
        time.sleep(0.5)
    drained = final >= accepted
    if not drained:
        log(f"drain cap of {DRAIN_CAP_SECONDS:.0f} s reached: {final}/{accepted} final")
    # The destination may see a delivery a moment before the run's final commit; settle.
    time.sleep(0.3)
    sink = stack.sink_stats() or {}

    rss_end = [vm_rss_kb(w.pid) for w in stack.workers]
    cpu1 = {role: cpu_seconds(pids()) for role, pids in roles.items()}
    if args.db == "postgresql":
        cpu1["postgres (server, all dbs)"] = postgres_cpu_seconds()
    self1 = os.times()
    busy1 = machine_busy()
    # Children of a gunicorn worker or an RQ worker are JSONata sandboxes (flows.sandbox).
    web_children = [p for p in family(stack.web.pid)[1:] if _is_sandbox(p)]
    peaks = {
        "web_master_kb": vm_hwm_kb(stack.web.pid),
        "web_workers_kb": [
            vm_hwm_kb(pid) for pid in family(stack.web.pid)[1:] if pid not in web_children
        ],
        "web_sandboxes_kb": [vm_hwm_kb(pid) for pid in web_children],
        "workers_kb": [vm_hwm_kb(w.pid) for w in stack.workers],
        "worker_sandboxes_kb": [vm_hwm_kb(pid) for w in stack.workers for pid in family(w.pid)[1:]],
        "scheduler_kb": vm_hwm_kb(stack.scheduler.pid),
    }
    profile = {}
    for kind, profiler in profilers.items():
        profiler.popen.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            profiler.popen.wait(timeout=30)
        profiler.expected_dead = True
        out = stack.tmp / f"profile-{kind}.txt"
        if out.exists():
            profile[kind] = summarise_profile(out)
            if args.keep_profile:
                args.keep_profile.mkdir(parents=True, exist_ok=True)
                shutil.copy(out, args.keep_profile / f"{args.db}-w{args.workers}-{kind}.txt")

    pg_delta = None
    if pg0 is not None:
        time.sleep(1.0)  # backends report their counters at most once a second
        pg1 = pg_counters(engine)
        pg_delta = {k: pg1[k] - pg0.get(k, 0) for k in pg1 if pg1[k] - pg0.get(k, 0)}
    runs = run_figures(engine, after_id)
    size = db_size_bytes(stack, engine)
    total_runs = api.total()
    tables = pg_tables(engine) if args.db == "postgresql" else None
    engine.dispose()

    peer = None
    if args.peer != "none":
        peer = nodered_run(stack, body)
        if peer is None and args.peer == "nodered":
            raise BenchError("--peer nodered: Node-RED is not installed")
    sql_profile = None
    if args.sql_profile:
        argv = [
            sys.executable,
            str(BENCH / "profile_paths.py"),
            "--db",
            args.db,
            "--messages",
            "200",
            "--order",
            str(args.order),
        ]
        if args.db == "postgresql":
            argv += ["--pg-url", shared.psycopg_url(args.pg_url)]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
        sql_profile = "\n".join(
            line for line in done.stdout.splitlines() if line and "alembic" not in line
        )
    unique = sink.get("unique_keys")

    first_accept = epoch(runs["first_received"]) if runs["first_received"] else load_started_wall
    last_delivery = (sink.get("last") or 0) / 1000
    span = last_delivery - first_accept if last_delivery else None
    delivered = int(sink.get("count", 0))
    load_s = load["duration_s"]
    machine_cores = os.cpu_count() or 1
    busy_frac = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
    busy_s = (busy1[0] - busy0[0]) / os.sysconf("SC_CLK_TCK")
    ours = sum(cpu1[r] - cpu0[r] for r in cpu1) + (
        (self1.user + self1.system + self1.children_user + self1.children_system)
        - (self0.user + self0.system + self0.children_user + self0.children_system)
    )
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": code,
        "background_cores_before": round(quiet, 2),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "sink": stack.sink_kind,
        "load": load,
        "accepted": accepted,
        "accepted_per_s": accepted / load_s,
        "delivered": delivered,
        "delivered_during_load": int(at_load_end.get("count", 0)),
        "delivered_per_s_during_load": int(at_load_end.get("count", 0))
        / max(1e-9, load_ended_wall - load_started_wall),
        "e2e_span_s": span,
        "delivered_per_s": (delivered / span) if span else None,
        "drain_after_load_s": (last_delivery - load_ended_wall) if last_delivery else None,
        "drained": drained,
        "runs": runs,
        "accepted_responses_vs_ledger": (load["accepted_responses"], accepted),
        "not_succeeded": runs["runs"] - runs["by_status"].get("succeeded", 0),
        "sink_bad": sink.get("bad"),
        "sink_duplicates": sink.get("duplicates"),
        "sink_unique_keys": sink.get("unique_keys"),
        "peaks": peaks,
        "cpu_s": {role: round(cpu1[role] - cpu0[role], 2) for role in roles}
        | {
            "load generator + bench": round(
                (self1.user + self1.system + self1.children_user + self1.children_system)
                - (self0.user + self0.system + self0.children_user + self0.children_system),
                2,
            )
        },
        "machine_busy_fraction": busy_frac,
        "other_cpu_s": round(busy_s - ours, 2),
        "machine_cores": machine_cores,
        "db_bytes_total": size,
        "db_bytes_baseline": baseline_size,
        "runs_in_db": total_runs,
        "bytes_per_run": size / max(1, total_runs),
        "bytes_per_run_marginal": (size - baseline_size) / max(1, total_runs),
        "pg_tables": tables,
        "pg_per_run": {k: round(v / max(1, accepted), 1) for k, v in pg_delta.items()}
        if pg_delta
        else None,
        "profile": profile,
        "worker_rss_kb": {"start": rss_start, "end": rss_end},
        # Python sink: by Idempotency-Key; node sink: by count only.
        "lost": (accepted - unique) if unique is not None else max(0, accepted - delivered),
        "duplicated": sink.get("duplicates")
        if unique is not None
        else max(0, delivered - accepted),
        "duplicates_by": "Idempotency-Key" if unique is not None else "count",
        "peer_nodered": peer,
        "sql_profile": sql_profile,
    }


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def _mb(kb: int | None) -> str:
    return "?" if kb is None else f"{kb / 1024:.0f}"


def report(args: argparse.Namespace, stack: Stack, f: dict[str, Any]) -> None:
    load, runs, peaks = f["load"], f["runs"], f["peaks"]
    delivered_ok = f["delivered"] == f["accepted"]
    web_total = (peaks["web_master_kb"] or 0) + sum(k or 0 for k in peaks["web_workers_kb"])
    web_sb = sum(k or 0 for k in peaks.get("web_sandboxes_kb", []))
    wk_sb = peaks.get("worker_sandboxes_kb", [])
    lines = [
        "",
        f"code {f['code']['sha256']} (newest source {f['code']['newest_source_mtime']})",
        f"Flowgate throughput — {args.db}, {args.workers} worker(s), web {args.web_workers} "
        f"procs x {args.web_threads} threads, c={args.connections}, {load['duration_s']:.1f} s "
        f"load ({load['generator']}), sink: {f['sink']}",
        "-" * 96,
        f"intake     accepted {f['accepted']} ({f['accepted_per_s']:.1f}/s); responses "
        f"{load['requests']} {load['statuses']}; latency p50 {_ms(load['p50_ms'])} ms, "
        f"p99 {_ms(load['p99_ms'])} ms, max {_ms(load['max_ms'])} ms",
        f"delivery   {f['delivered']} at the sink in {f['e2e_span_s'] or 0:.1f} s from first "
        f"accept to last delivery = {f['delivered_per_s'] or 0:.1f}/s end to end; "
        f"{f['delivered_per_s_during_load']:.1f}/s during the load; backlog drained "
        f"{f['drain_after_load_s'] or 0:.1f} s after the load stopped",
        f"latency    end to end (received_at→finished_at) p50 {_ms(runs['e2e_ms']['p50'])} ms, "
        f"p95 {_ms(runs['e2e_ms']['p95'])} ms, p99 {_ms(runs['e2e_ms']['p99'])} ms; queue wait "
        f"p50 {_ms(runs['queue_wait_ms_p50'])} ms; claim→finish p50 "
        f"{_ms(runs['claim_to_finish_ms_p50'])} ms",
        "steps      average recorded duration: "
        + ", ".join(f"{k} {v} ms" for k, v in runs["step_avg_ms"].items()),
        f"integrity  runs not succeeded: {f['not_succeeded']} {runs['by_status']}; sink count "
        f"{f['delivered']} vs accepted {f['accepted']}: "
        f"{'EQUAL' if delivered_ok else 'DIFFERENT'}; runs with >1 attempt "
        f"{runs['attempts_gt_1']}; delivery attempts {runs['delivery_attempts']} for "
        f"{runs['deliveries']} deliveries"
        + (
            f"; sink duplicates by Idempotency-Key {f['sink_duplicates']}"
            if f["sink_duplicates"] is not None
            else ""
        )
        + f"; sink sanity failures {f['sink_bad']}"
        + ("" if f["drained"] else "; NOT DRAINED within the cap"),
        f"memory     peak RSS (VmHWM) web {_mb(web_total)} MB (master {_mb(peaks['web_master_kb'])}"
        f" + workers {'/'.join(_mb(k) for k in peaks['web_workers_kb'])})"
        + (
            f" + {len(peaks['web_sandboxes_kb'])} JSONata sandboxes {_mb(web_sb)} MB"
            if web_sb
            else ""
        )
        + f", RQ workers {'/'.join(_mb(k) for k in peaks['workers_kb'])} MB"
        + (f" + {len(wk_sb)} sandboxes {'/'.join(_mb(k) for k in wk_sb)} MB" if wk_sb else "")
        + f", scheduler {_mb(peaks['scheduler_kb'])} MB",
        f"storage    {f['db_bytes_total'] / 1e6:.1f} MB for {f['runs_in_db']} runs = "
        f"{f['bytes_per_run'] / 1024:.1f} KB/run ({f['bytes_per_run_marginal'] / 1024:.1f} KB/run "
        f"above the empty schema)"
        + (
            " tables: " + ", ".join(f"{t} {b / 1e6:.1f} MB" for t, b in f["pg_tables"].items())
            if f["pg_tables"]
            else ""
        ),
        "cpu        seconds from load start to drained: "
        + ", ".join(f"{k} {v}" for k, v in f["cpu_s"].items())
        + f"; machine busy {f['machine_busy_fraction'] * 100:.0f}% of {f['machine_cores']} cores"
        f" (background before the run: {f['background_cores_before']:.2f} cores; CPU not "
        f"accounted to the benchmark during it: {f['other_cpu_s']} s)"
        + "; CPU ms per delivered message: "
        + ", ".join(
            f"{k} {1000 * v / max(1, f['delivered']):.1f}"
            for k, v in f["cpu_s"].items()
            if k in ("web", "workers") or k.startswith("postgres")
        ),
    ]
    rss = f["worker_rss_kb"]
    lines.append(
        f"must be 0  lost {f['lost']}, duplicated {f['duplicated']} (by {f['duplicates_by']}); "
        f"RQ worker RSS at load start {'/'.join(_mb(k) for k in rss['start'])} MB, at the end "
        f"{'/'.join(_mb(k) for k in rss['end'])} MB"
    )
    peer = f.get("peer_nodered")
    if peer:
        pl = peer["load"]
        ratio = (
            (f["delivered_per_s"] or 0) / peer["delivered_per_s"]
            if peer.get("delivered_per_s")
            else None
        )
        lines.append(
            f"Node-RED   same order and load, same run: answered {peer['accepted']} "
            f"({peer['accepted_per_s']:.1f}/s), p50 {_ms(pl['p50_ms'])} ms, p99 "
            f"{_ms(pl['p99_ms'])} ms; delivered {peer['delivered']} = "
            f"{peer['delivered_per_s'] or 0:.1f}/s; lost {peer['lost']} (keeps nothing); "
            f"CPU {peer['cpu_ms_per_msg']:.1f} ms/msg; RSS {_mb(peer['rss_kb'][0])}→"
            f"{_mb(peer['rss_kb'][1])} MB (peak {_mb(peer['peak_kb'])})"
        )
        if ratio is not None:
            lines.append(
                f"ratio      Flowgate / Node-RED delivered/s end to end = {ratio:.2f} "
                f"(intake accepted/s ratio "
                f"{f['accepted_per_s'] / max(1e-9, peer['accepted_per_s']):.2f})"
            )
    if f.get("pg_per_run"):
        per = f["pg_per_run"]
        lines.append(
            f"postgres   per accepted message (all processes, API polling included): "
            f"{per['commits']} commits, {per.get('rollbacks', 0)} rollbacks, "
            f"{per.get('inserted', 0)} rows "
            f"inserted, {per.get('updated', 0)} updated, {per.get('deleted', 0)} deleted ("
            + ", ".join(f"{k} {v}" for k, v in per.items() if "." in k and v >= 0.05)
            + ")"
        )
    for _kind, profile in (f.get("profile") or {}).items():
        n = profile["samples"]
        busy = n - profile["phases"].get(IDLE, 0)
        if not busy:
            continue
        what = "wall clock, blocked time included"
        lines.append(
            f"profile    worker 1, {what}: {n} samples, "
            f"{100 * profile['phases'].get(IDLE, 0) / n:.0f}% idle waiting for jobs; "
            "of the rest:"
        )
        lines.append(
            "  by phase:   "
            + ", ".join(
                f"{k} {100 * v / busy:.0f}%"
                for k, v in profile["phases"].most_common()
                if k != IDLE
            )
        )
        lines.append(
            "  by library: "
            + ", ".join(f"{k} {100 * v / busy:.0f}%" for k, v in profile["libraries"].most_common())
        )
    if f.get("sql_profile"):
        lines.append("sql profile (bench/profile_paths.py, in process, per message):")
        lines.extend("  " + line for line in f["sql_profile"].splitlines())
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
