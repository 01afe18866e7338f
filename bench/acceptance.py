"""Flowgate reliability acceptance (issue #5): faults at scale on PostgreSQL with real processes.

    .venv/bin/python bench/acceptance.py [--scenario all|kills|flaky|outage|bad_request|dedupe|
        hostile] [--messages 2000] [--outage-seconds 120]

It starts the real stack as separate OS processes: gunicorn (web), two RQ workers
(``python -m app.worker``) and the scheduler, on a PostgreSQL database of its own
(``flowgate_bench_accept_<hex>``, created and dropped) and Redis db 11 (flushed before and
after). Destinations are counting HTTP sinks in this process whose behaviour each scenario
scripts (up/down, 500 n times per key, 400 unless the body is right, holding a request so a
worker can be killed in the middle of it). A sink records an *effect* when a request with a
new ``Idempotency-Key`` is answered 2xx (recorded on receipt, before the answer: the worst case
for a worker killed after the destination acted but before the run was marked done).

Scenarios (each prints a table of figures, then PASS or FAIL; the exit status is 1 if any
failed):

- ``kills``: N orders posted by 8 clients; a worker is ``kill -9``'d (its whole process group)
  three times while it is inside an HTTP delivery, and replaced → every order delivered, each
  with exactly one effect.
- ``flaky``: the sink answers 500 twice per key, then 201 → one effect, three attempts.
- ``outage``: the sink is down (connection refused) for S seconds while orders keep coming →
  the breaker opens, waiting runs use no attempts, everything is delivered after recovery.
- ``bad_request``: the sink answers 400 to a wrong mapping → dead letters with the reason;
  the mapping is fixed in a new approved version; a bulk replay preview shows the already
  acknowledged destination as skipped; the replay on the live version delivers once.
- ``dedupe``: the same Shopify event (signed, ``X-Shopify-Event-Id``) posted 20 times
  concurrently → one run, one effect.
- ``hostile``: each hostile JSONata expression of the reliability document in its own run →
  ``resource_limit`` within 2 s, workers unharmed, a normal run succeeds afterwards.

tests/e2e/test_load_faults.py runs CI-sized versions of the same scenarios.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import os
import queue
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import stack as shared  # noqa: E402
from bench.stack import Api, StackError  # noqa: E402
from tests.support.contracts import contract_between  # noqa: E402
from tests.support.drafts import webhook_flow  # noqa: E402
from tests.support.processes import Proc, Processes, free_port, http, wait_for  # noqa: E402

PG_ADMIN_DEFAULT = os.environ.get(
    "FLOWGATE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_DEFAULT = "redis://127.0.0.1:6379/11"
FINAL = ("succeeded", "dead_lettered", "filtered", "rejected")
PENDING = ("queued", "running", "retrying")
HOSTILE_LIMIT_S = 2.0
SHOPIFY_SECRET = "shpss_acceptance_0123456789abcdef"

ORDER_FILE = ROOT / "app" / "demo" / "commerce-order-created.json"
ORDER: dict[str, Any] = json.loads(ORDER_FILE.read_text())
MAPPING = (
    "{ 'orderRef': 'WEB-' & $string(order_number),"
    " 'lines': [line_items.{'sku': sku, 'qty': quantity}] }"
)
# The mistake fixed in scenario bad_request: the destination requires 'orderRef'.
WRONG_MAPPING = "{ 'order_ref': $string(order_number), 'lines': [line_items.sku] }"

# Reliability document §4 test 24, in that order.
HOSTILE: list[tuple[str, str]] = [
    ("infinite tail recursion", "($f := function($x){ $f($x + 1) }; $f(1))"),
    ("deep non-tail recursion", "($f := function($x){ $x = 0 ? 0 : 1 + $f($x - 1) }; $f(1000000))"),
    ("[1..20000000]", "$count([1..20000000])"),
    ('$pad("",200000000,"x")', '$length($pad("", 200000000, "x"))'),
    ("catastrophic regex", '$match("' + "a" * 40 + '!", /(a+)+$/)'),
    ("cartesian product", "$count([1..1000].([1..1000]).([1..100]))"),
    ("5000 nested parentheses", "(" * 5000 + "1" + ")" * 5000),
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def order_ref(body: bytes) -> str | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    ref = doc.get("orderRef") if isinstance(doc, dict) else None
    return str(ref) if ref is not None else None


# --------------------------------------------------------------------------- the sink


@dataclass
class Hit:
    at: float
    path: str
    key: str
    status: int
    body: bytes
    client_port: int


class ControlSink:
    """A destination whose behaviour the scenario scripts; counts effects by Idempotency-Key."""

    def __init__(self) -> None:
        self.port = free_port()
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self.fail_first = 0  # answer ``fail_status`` to the first n requests of every key
        self.fail_status = 500
        self.reject: Callable[[str, bytes], bool] | None = None  # True -> 400
        self._failed: Counter[str] = Counter()
        self._hold: tuple[float, queue.Queue[Hit]] | None = None
        self.server: ThreadingHTTPServer | None = None
        self.downs: list[tuple[float, float | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> ControlSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                key = self.headers.get("Idempotency-Key", "")
                held = None
                with sink.lock:
                    if sink._failed[key] < sink.fail_first:
                        sink._failed[key] += 1
                        status = sink.fail_status
                    elif sink.reject is not None and sink.reject(self.path, body):
                        status = 400
                    else:
                        status = 201
                    hit = Hit(
                        time.monotonic(), self.path, key, status, body, self.client_address[1]
                    )
                    sink.hits.append(hit)
                    if sink._hold is not None and 200 <= status < 300:
                        held, sink._hold = sink._hold, None
                if held is not None:
                    held[1].put(hit)
                    time.sleep(held[0])
                answer = json.dumps({"ok": status < 300}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:  # the worker was killed while we held its request
                    pass

            do_PUT = do_POST  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        if self.downs and self.downs[-1][1] is None:
            self.downs[-1] = (self.downs[-1][0], time.monotonic())
        return self

    def down(self) -> None:
        """Stop listening: connections are refused until ``up``."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        self.downs.append((time.monotonic(), None))

    def hold_next(self, seconds: float) -> queue.Queue[Hit]:
        """The next request answered 2xx is held ``seconds`` (its Hit is put on the queue)."""
        box: queue.Queue[Hit] = queue.Queue()
        with self.lock:
            self._hold = (seconds, box)
        return box

    def snapshot(self) -> list[Hit]:
        with self.lock:
            return list(self.hits)

    def effects(self, path: str = "") -> dict[str, Hit]:
        """Idempotency-Key -> the request that had the effect (first 2xx with that key)."""
        found: dict[str, Hit] = {}
        for hit in self.snapshot():
            if hit.path.startswith(path) and 200 <= hit.status < 300 and hit.key not in found:
                found[hit.key] = hit
        return found

    def requests_per_key(self, path: str = "") -> Counter[str]:
        return Counter(h.key for h in self.snapshot() if h.path.startswith(path))

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


# --------------------------------------------------------------------------- the stack


# A scenario's own failure; set-up and API failures raise its base, bench.stack.StackError.
class AcceptanceError(StackError):
    pass


class Stack:
    """PostgreSQL database + Redis db + web, workers, scheduler; ``close`` releases all."""

    def __init__(
        self,
        *,
        pg_admin_url: str = PG_ADMIN_DEFAULT,
        redis_url: str = REDIS_DEFAULT,
        workers: int = 2,
        settings: dict[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="flowgate-accept-"))
        self.procs = Processes(log_dir or self.tmp / "logs")
        self.pg_admin_url = shared.psycopg_url(pg_admin_url)
        self.redis_url = redis_url
        self.n_workers = workers
        self.settings = settings or {}
        self.pg_db: str | None = None
        self.db_url = ""
        self.queue = f"accept-{uuid.uuid4().hex[:10]}"
        self.env: dict[str, str] = {}
        self.workers: list[Proc] = []
        self.web_port = 0
        self.engine: Any = None
        self.analyst: Api | None = None
        self.owner: Api | None = None
        self.sinks: list[ControlSink] = []
        self.contract: dict[str, Any] = {}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    # ---- lifecycle
    def start(self) -> Stack:
        from sqlalchemy import create_engine

        self._flush_redis()
        self.pg_db = f"flowgate_bench_accept_{uuid.uuid4().hex[:8]}"
        self.db_url = shared.create_database(self.pg_admin_url, self.pg_db)
        self.web_port = free_port()
        self.env = shared.app_env(self, **self.settings)
        log(f"database {self.pg_db}: migrating")
        self.flask("db", "upgrade", "heads")
        self.procs.web(self.env, self.web_port, workers=2)
        for _ in range(self.n_workers):
            self.workers.append(self.procs.worker(self.env))
        self.procs.scheduler(self.env)
        password = secrets.token_urlsafe(12)

        def user(role: str) -> str:  # while the processes boot, both roles at once
            return shared.user_token(self.env, role, f"{role}@accept.local", password)

        with ThreadPoolExecutor(max_workers=2) as pool:
            tokens = dict(
                zip(("analyst", "owner"), pool.map(user, ("analyst", "owner")), strict=True)
            )
        self.engine = create_engine(self.db_url, pool_size=2)

        shared.wait_healthy(self.procs, self.base, timeout=90)
        self.wait_workers_registered(self.n_workers)
        self.analyst, self.owner = (
            Api(self.base, tokens["analyst"]),
            Api(self.base, tokens["owner"]),
        )
        self.contract = self._contract()
        log(f"stack up: web :{self.web_port}, workers {[w.pid for w in self.workers]}")
        return self

    def wait_workers_registered(self, n: int, timeout: float = 90) -> None:
        shared.wait_workers(self.procs, self.redis_url, self.queue, n, timeout)

    def flask(self, *cli: str) -> str:
        return shared.flask(self.env, *cli)

    def _flush_redis(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2)
        try:
            client.flushdb()
        finally:
            client.close()

    def close(self) -> None:
        for sink in self.sinks:
            with contextlib.suppress(Exception):
                sink.close()
        shared.stop_gracefully(self.procs)
        if self.engine is not None:
            self.engine.dispose()
        with contextlib.suppress(Exception):
            self._flush_redis()
        if self.pg_db:
            try:
                shared.drop_database(self.pg_admin_url, self.pg_db)
            except Exception as exc:  # never hide the outcome
                log(f"could not drop {self.pg_db}: {exc!r}")
            self.pg_db = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- workers
    def worker_in_delivery(self, client_port: int) -> Proc | None:
        """The live worker whose process group holds the TCP connection from ``client_port``."""
        import psutil

        for proc in self.workers:
            if not proc.alive():
                continue
            try:
                root = psutil.Process(proc.pid)
                for member in [root, *root.children(recursive=True)]:
                    for conn in member.net_connections(kind="tcp"):
                        if conn.laddr and conn.laddr.port == client_port:
                            return proc
            except psutil.Error:
                continue
        return None

    def kill_worker(self, proc: Proc) -> None:
        """``kill -9`` of the worker and everything in its process group (sandboxes)."""
        proc.expected_dead = True
        proc.signal_group(signal.SIGKILL)
        proc.popen.wait(timeout=10)
        self.workers.remove(proc)

    def add_worker(self) -> Proc:
        proc = self.procs.worker(self.env)
        self.workers.append(proc)
        return proc

    # ---- SQL reads (fresh connection each time)
    def rows(self, sql: str, **params: Any) -> list[Any]:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params))

    def statuses(self, flow_id: int) -> Counter[str]:
        return Counter(
            {
                r[0]: r[1]
                for r in self.rows(
                    "SELECT status, count(*) FROM runs WHERE flow_id = :f GROUP BY status",
                    f=flow_id,
                )
            }
        )

    def wait_final(self, flow_id: int, expected: int, timeout: float) -> float:
        """Wait until the flow has ``expected`` runs, none pending; returns when (monotonic)."""

        def done() -> bool:
            self.procs.check_alive()
            counts = self.statuses(flow_id)
            return sum(counts.values()) >= expected and not any(counts[s] for s in PENDING)

        wait_for(
            done,
            timeout=timeout,
            interval=0.25,
            what=f"{expected} runs of flow {flow_id} to be final",
            on_timeout=lambda: f"statuses {dict(self.statuses(flow_id))}\n" + self.procs.logs(15),
        )
        return time.monotonic()

    def deliveries(self, flow_id: int, step: str | None = None) -> list[Any]:
        sql = (
            "SELECT d.run_id, d.step_id, d.status, d.attempts, d.idempotency_key "
            "FROM deliveries d JOIN runs r ON r.id = d.run_id WHERE r.flow_id = :f"
        )
        if step:
            sql += " AND d.step_id = :s"
        return self.rows(sql, f=flow_id, s=step)

    # ---- flows
    def sink(self) -> ControlSink:
        sink = ControlSink().up()
        self.sinks.append(sink)
        return sink

    def connection(self, sink: ControlSink, name: str) -> int:
        assert self.analyst is not None
        created = self.analyst.call(
            "POST",
            "/api/v1/connections",
            {
                "name": name,
                "connector": "http",
                "config": {"base_url": sink.url, "auth": "none", "timeout_seconds": 10},
            },
            expect=201,
        )
        return int(created["id"])

    def flow(
        self,
        name: str,
        connection_id: int,
        *,
        mapping: str = MAPPING,
        destinations: Iterable[tuple[str, str]] = (("send_oms", "/orders"),),
        retry: dict[str, Any] | None = None,
        trigger: dict[str, Any] | None = None,
        trigger_connection_id: int | None = None,
    ) -> dict[str, Any]:
        """Create, submit and approve (as another user) a webhook → map → deliver flow."""
        assert self.analyst is not None
        flow = self.analyst.call("POST", "/api/v1/flows", {"name": name}, expect=201)
        definition = flow_definition(
            connection_id,
            mapping=mapping,
            destinations=destinations,
            retry=retry,
            trigger=trigger,
            trigger_connection_id=trigger_connection_id,
        )
        version = self.approve(flow["id"], definition)
        return {**flow, "version": version, "definition": definition}

    def approve(self, flow_id: int, definition: dict[str, Any]) -> int:
        assert self.analyst is not None and self.owner is not None
        saved = self.analyst.call(
            "PUT", f"/api/v1/flows/{flow_id}/draft", {"definition": definition}
        )
        if saved.get("problems"):
            raise AcceptanceError(f"the draft has problems: {saved['problems']}")
        path = f"/api/v1/flows/{flow_id}/versions/{saved['version']}"
        self.analyst.call("POST", f"{path}/submit", {"contract": self.contract})
        self.owner.call("POST", f"{path}/approve", {"comment": "acceptance"})
        return int(saved["version"])

    def _contract(self) -> dict[str, Any]:
        """The integration contract every submitted version needs (the review gate's rule)."""
        assert self.owner is not None
        owner_id = self.owner.call("GET", "/api/v1/auth/me")["user"]["id"]
        shop = self.owner.call(
            "POST", "/api/v1/systems", {"name": "Acceptance shop", "kind": "commerce"}, expect=201
        )
        oms = self.owner.call(
            "POST", "/api/v1/systems", {"name": "Acceptance OMS", "kind": "oms"}, expect=201
        )
        return contract_between(
            shop["id"],
            oms["id"],
            owner_id,
            peak_per_minute=600,
            error_policy={
                "max_attempts": 5,
                "max_age_seconds": 86400,
                "dead_letter_handling": "owner replays after fixing the cause",
            },
            on_call={
                "name": "Integration on-call",
                "email": "oncall@example.test",
                "webhook_url": None,
            },
        )


def flow_definition(
    connection_id: int,
    *,
    mapping: str = MAPPING,
    destinations: Iterable[tuple[str, str]] = (("send_oms", "/orders"),),
    retry: dict[str, Any] | None = None,
    trigger: dict[str, Any] | None = None,
    trigger_connection_id: int | None = None,
) -> dict[str, Any]:
    doc = webhook_flow(
        connection_id,
        mapping=mapping,
        retry=retry or {"max_attempts": 5, "backoff_seconds": 0.5, "max_backoff_seconds": 4},
        only_paid=False,
        layout=None,
        trigger_config=trigger,
        destinations=destinations,
    )
    if trigger_connection_id is not None:
        doc["trigger"]["connection_id"] = trigger_connection_id
    return doc


def order_body(number: int) -> bytes:
    return json.dumps({**ORDER, "order_number": number}).encode()


def post_orders(
    stack: Stack,
    slug: str,
    numbers: Iterable[int],
    *,
    clients: int = 8,
    pace: float = 0.0,
) -> dict[int, tuple[int, int | None]]:
    """POST each order (``clients`` at a time); order number -> (HTTP status, run id)."""
    results: dict[int, tuple[int, int | None]] = {}
    lock = threading.Lock()

    def one(number: int) -> None:
        try:
            status, _, raw = http(
                "POST",
                f"{stack.base}/hooks/{slug}",
                body=order_body(number),
                headers={"Content-Type": "application/json"},
                timeout=30,
            )
            body = json.loads(raw) if raw else {}
        except OSError:
            status, body = -1, {}
        with lock:
            results[number] = (status, body.get("run_id") if isinstance(body, dict) else None)
        if pace:
            time.sleep(pace)

    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, numbers))
    return results


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    scenario: str
    figures: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.failures.append(what)

    def table(self) -> str:
        width = max([len(k) for k in self.figures] + [10])
        lines = [f"== {self.scenario} " + "=" * max(0, 70 - len(self.scenario))]
        for key, value in self.figures.items():
            lines.append(f"  {key:<{width}}  {value}")
        verdict = "PASS" if self.passed else "FAIL"
        took = f" ({self.seconds:.1f} s)" if self.seconds else ""
        lines.append(f"  {'result':<{width}}  {verdict}{took}")
        lines += [f"  ! {failure}" for failure in self.failures]
        return "\n".join(lines)


def exactly_once(
    result: Result, sink: ControlSink, path: str, accepted: dict[int, int], keys: dict[int, str]
) -> dict[str, int]:
    """Compare the sink with the accepted orders: one effect per order, under its run's key.

    ``accepted``: order number -> run id; ``keys``: run id -> the delivery's idempotency key.
    """
    effects = sink.effects(path)
    by_ref: dict[str, list[str]] = defaultdict(list)
    for key, hit in effects.items():
        by_ref[order_ref(hit.body) or "?"].append(key)
    lost = [n for n in accepted if not by_ref.get(f"WEB-{n}")]
    duplicated = {ref: ks for ref, ks in by_ref.items() if len(ks) > 1}
    foreign = [k for k in effects if k not in set(keys.values())]
    wrong_key = [
        n
        for n, run in accepted.items()
        if by_ref.get(f"WEB-{n}") and by_ref[f"WEB-{n}"][0] != keys.get(run)
    ]
    per_key = sink.requests_per_key(path)
    repeats = sum(n - 1 for k, n in per_key.items() if k in effects and n > 1)
    result.check(not lost, f"{len(lost)} accepted orders never reached the sink: {lost[:10]}")
    result.check(not duplicated, f"orders with more than one effect: {list(duplicated)[:10]}")
    result.check(not foreign, f"effects under keys of no delivery row: {foreign[:5]}")
    result.check(not wrong_key, f"orders delivered under another run's key: {wrong_key[:10]}")
    return {
        "effects": len(effects),
        "duplicates": len(duplicated),
        "lost": len(lost),
        "repeats": repeats,
    }


def _accepted(result: Result, posted: dict[int, tuple[int, int | None]]) -> dict[int, int]:
    ok = {n: rid for n, (status, rid) in posted.items() if status in (200, 202) and rid}
    bad = Counter(status for status, _ in posted.values() if status not in (200, 202))
    result.check(not bad, f"webhook answers other than 2xx: {dict(bad)}")
    return ok


def _keys(stack: Stack, flow_id: int, step: str = "send_oms") -> dict[int, str]:
    return {row.run_id: row.idempotency_key for row in stack.deliveries(flow_id, step)}


def _attempts(stack: Stack, flow_id: int, step: str = "send_oms") -> list[int]:
    return [row.attempts for row in stack.deliveries(flow_id, step)]


# --------------------------------------------------------------------------- scenarios


def scenario_kills(stack: Stack, messages: int = 2000, kills: int = 3) -> Result:
    result = Result("kills")
    sink = stack.sink()
    flow = stack.flow(f"Kills {uuid.uuid4().hex[:4]}", stack.connection(sink, "OMS (kills)"))
    numbers = list(range(100_000, 100_000 + messages))
    posted: dict[int, tuple[int, int | None]] = {}
    started = time.monotonic()
    posted_by: list[float] = []

    def post_all() -> None:
        posted.update(post_orders(stack, flow["slug"], numbers))
        posted_by.append(time.monotonic())

    poster = threading.Thread(target=post_all, daemon=True)
    poster.start()
    landed: list[dict[str, Any]] = []
    for i in range(1, kills + 1):
        target = messages * i // (kills + 1)
        wait_for(
            lambda t=target: stack.procs.check_alive() or len(sink.effects()) >= t,
            timeout=600,
            interval=0.05,
            what=f"{target} deliveries",
            on_timeout=stack.procs.logs,
        )
        box = sink.hold_next(3.0)
        try:
            hit = box.get(timeout=60)
        except queue.Empty:
            result.check(False, f"kill {i}: no delivery reached the sink within 60 s")
            continue
        victim = stack.worker_in_delivery(hit.client_port)
        if victim is None:
            result.check(False, f"kill {i}: no worker holds the held request's connection")
            continue
        stack.kill_worker(victim)
        killed_at = time.monotonic() - started
        stack.add_worker()
        landed.append(
            {
                "at_s": round(killed_at, 1),
                "pid": victim.pid,
                "key": hit.key,
                "order": order_ref(hit.body),
            }
        )
        log(
            f"kill {i}: worker {victim.pid} killed mid-delivery of {order_ref(hit.body)} "
            f"at {killed_at:.1f}s"
        )
    poster.join(timeout=900)
    last_post = posted_by[0] if posted_by else time.monotonic()
    posting_s = last_post - started
    accepted = _accepted(result, posted)
    done_at = stack.wait_final(flow["id"], len(accepted), timeout=900)
    statuses = stack.statuses(flow["id"])
    keys = _keys(stack, flow["id"])
    once = exactly_once(result, sink, "/orders", accepted, keys)
    attempts = _attempts(stack, flow["id"])
    killed_keys = {k["key"] for k in landed}
    killed_attempts = [
        row.attempts
        for row in stack.deliveries(flow["id"], "send_oms")
        if row.idempotency_key in killed_keys
    ]
    result.check(len(landed) == kills, f"{len(landed)} of {kills} kills hit a delivery in flight")
    result.check(
        statuses.get("succeeded", 0) == len(accepted) == messages,
        f"runs: {dict(statuses)} for {len(accepted)} accepted of {messages}",
    )
    result.check(
        all(a >= 2 for a in killed_attempts),
        f"killed deliveries' attempts {killed_attempts}: the retry is not recorded",
    )
    result.figures = {
        "sent": messages,
        "accepted": len(accepted),
        "runs": dict(statuses),
        "delivered (runs succeeded)": statuses.get("succeeded", 0),
        "sink effects": once["effects"],
        "duplicates": once["duplicates"],
        "lost": once["lost"],
        "repeated requests (same key, absorbed)": once["repeats"],
        "kills (at s, pid, in-flight order)": [(k["at_s"], k["pid"], k["order"]) for k in landed],
        "attempts total": sum(attempts),
        "per-run max attempts": max(attempts, default=0),
        "attempts of the killed deliveries": killed_attempts,
        "posting time": f"{posting_s:.1f} s",
        "drain time after last post": f"{done_at - last_post:.1f} s",
        "throughput": f"{len(accepted) / (done_at - started):.1f} msg/s end to end",
    }
    return result


def scenario_flaky(stack: Stack, messages: int = 5) -> Result:
    result = Result("flaky")
    sink = stack.sink()
    sink.fail_first, sink.fail_status = 2, 500
    flow = stack.flow(f"Flaky {uuid.uuid4().hex[:4]}", stack.connection(sink, "OMS (flaky)"))
    posted: dict[int, tuple[int, int | None]] = {}
    started = time.monotonic()
    # One at a time: concurrent flaky keys would open the breaker (5 consecutive failures),
    # which is the outage scenario's subject, not this one's.
    for n in range(200_000, 200_000 + messages):
        posted.update(post_orders(stack, flow["slug"], [n], clients=1))
        stack.wait_final(flow["id"], len(posted), timeout=120)
    accepted = _accepted(result, posted)
    statuses = stack.statuses(flow["id"])
    once = exactly_once(result, sink, "/orders", accepted, _keys(stack, flow["id"]))
    attempts = _attempts(stack, flow["id"])
    per_key = sink.requests_per_key("/orders")
    # "Visible": the run as the API shows it.
    assert stack.analyst is not None
    shown = stack.analyst.call("GET", f"/api/v1/runs/{next(iter(accepted.values()))}")
    shown_attempts = [d["attempts"] for d in shown.get("deliveries", [])]
    result.check(statuses.get("succeeded", 0) == messages, f"runs: {dict(statuses)}")
    result.check(attempts == [3] * messages, f"delivery attempts {attempts}, wanted 3 each")
    result.check(sorted(per_key.values()) == [3] * messages, f"requests per key {per_key}")
    result.check(shown_attempts == [3], f"GET /runs/<id> shows attempts {shown_attempts}")
    result.figures = {
        "sent": messages,
        "accepted": len(accepted),
        "runs": dict(statuses),
        "sink effects": once["effects"],
        "duplicates": once["duplicates"],
        "lost": once["lost"],
        "requests per key (500, 500, 201)": sorted(set(per_key.values())),
        "attempts per delivery (ledger)": attempts,
        "attempts shown by GET /api/v1/runs/<id>": shown_attempts,
        "time": f"{time.monotonic() - started:.1f} s ({messages} messages, one at a time)",
    }
    return result


def _breaker(stack: Stack, connection_id: int) -> str:
    assert stack.analyst is not None
    status, body = stack.analyst.raw("GET", f"/api/v1/connections/{connection_id}")
    return body.get("breaker", {}).get("state", "?") if status == 200 else f"http {status}"


def scenario_outage(stack: Stack, seconds: float = 120, messages: int = 300) -> Result:
    result = Result("outage")
    sink = stack.sink()
    connection_id = stack.connection(sink, "OMS (outage)")
    flow = stack.flow(f"Outage {uuid.uuid4().hex[:4]}", connection_id)
    threshold = int(stack.env.get("FLOWGATE_BREAKER_THRESHOLD", "5"))
    cooldown = float(stack.env.get("FLOWGATE_BREAKER_COOLDOWN_SECONDS", "30"))
    warm = list(range(300_000, 300_010))
    posted = post_orders(stack, flow["slug"], warm)
    stack.wait_final(flow["id"], len(warm), timeout=60)

    states: list[tuple[float, str]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            state = _breaker(stack, connection_id)
            if not states or states[-1][1] != state:
                states.append((time.monotonic(), state))
            time.sleep(0.25)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    sink.down()
    down_at = time.monotonic()
    log(f"outage: sink down for {seconds:.0f} s, {messages} orders arriving meanwhile")
    during = list(range(300_100, 300_100 + messages))
    # Spread over the first half of the outage: orders keep arriving while it is down.
    pace = (seconds / 2) / max(1, messages / 4)
    posted.update(post_orders(stack, flow["slug"], during, clients=4, pace=pace))
    remaining = seconds - (time.monotonic() - down_at)
    if remaining > 0:
        time.sleep(remaining)
    attempts_at_recovery = sum(_attempts(stack, flow["id"]))
    statuses_down = stack.statuses(flow["id"])
    sink.up()
    up_at = time.monotonic()
    log("outage: sink up again")
    done_at = stack.wait_final(flow["id"], len(posted), timeout=600)
    time.sleep(1.0)
    stop.set()
    watcher.join(timeout=5)
    accepted = _accepted(result, posted)
    statuses = stack.statuses(flow["id"])
    once = exactly_once(result, sink, "/orders", accepted, _keys(stack, flow["id"]))
    attempts = _attempts(stack, flow["id"])
    outage_attempts = [
        row.attempts
        for row in stack.deliveries(flow["id"], "send_oms")
        if row.run_id in {accepted[n] for n in during if n in accepted}
    ]
    failed_attempts = sum(attempts) - len(attempts)  # every delivery ends with one success
    opened = [t - down_at for t, s in states if s == "open" and t >= down_at]
    closed = [t - up_at for t, s in states if s == "closed" and t >= up_at]
    # Failures the breaker lets through: `threshold` to open it, then one trial per cool-down
    # (a failed trial reopens it), plus what both workers had in flight when it opened.
    budget = threshold + int(seconds / cooldown) + 2 + len(stack.workers)
    result.check(bool(opened), "the breaker never opened during the outage")
    result.check(bool(closed), "the breaker did not close after recovery")
    result.check(
        statuses.get("succeeded", 0) == len(accepted) == len(posted), f"runs: {dict(statuses)}"
    )
    result.check(
        statuses_down.get("dead_lettered", 0) == 0,
        f"dead letters during the outage: {statuses_down.get('dead_lettered')}",
    )
    result.check(
        failed_attempts <= budget,
        f"{failed_attempts} failed attempts while down (budget {budget}): attempts burned",
    )
    result.check(
        max(outage_attempts, default=0) <= 3,
        f"a run used {max(outage_attempts, default=0)} attempts during the outage",
    )
    result.figures = {
        "sent": len(posted),
        "accepted": len(accepted),
        "runs": dict(statuses),
        "sink effects": once["effects"],
        "duplicates": once["duplicates"],
        "lost": once["lost"],
        "outage": f"{seconds:.0f} s (connection refused); breaker threshold {threshold}, "
        f"cool-down {cooldown:.0f} s",
        "breaker opened at": f"{opened[0]:.1f} s after the sink went down" if opened else "never",
        "breaker states": " -> ".join(f"{s}@{t - down_at:+.0f}s" for t, s in states)[:400],
        "breaker closed at": f"{closed[0]:.1f} s after the sink came back" if closed else "never",
        "failed attempts (all runs)": f"{failed_attempts} (budget {budget})",
        "attempts recorded when the sink came back": attempts_at_recovery,
        "per-run max attempts": max(attempts, default=0),
        "runs by attempts": dict(sorted(Counter(attempts).items())),
        "dead letters": statuses.get("dead_lettered", 0),
        # Run.attempts counts claims: every re-check of an open breaker is one (see README).
        "claims per run (max)": stack.rows(
            "SELECT max(attempts) FROM runs WHERE flow_id = :f", f=flow["id"]
        )[0][0],
        "drain time after recovery": f"{done_at - up_at:.1f} s",
    }
    return result


def scenario_bad_request(stack: Stack, messages: int = 200) -> Result:
    result = Result("bad_request")
    sink = stack.sink()
    sink.reject = lambda path, body: path.startswith("/orders") and order_ref(body) is None
    connection_id = stack.connection(sink, "OMS (strict)")
    destinations = (("send_oms", "/orders"), ("send_audit", "/audit"))
    flow = stack.flow(
        f"Bad request {uuid.uuid4().hex[:4]}",
        connection_id,
        mapping=WRONG_MAPPING,
        destinations=destinations,
    )
    started = time.monotonic()
    posted = post_orders(stack, flow["slug"], range(400_000, 400_000 + messages))
    accepted = _accepted(result, posted)
    stack.wait_final(flow["id"], len(accepted), timeout=300)
    statuses = stack.statuses(flow["id"])
    reasons = Counter(
        r[0] or ""
        for r in stack.rows(
            "SELECT reason FROM runs WHERE flow_id = :f AND status = 'dead_lettered'", f=flow["id"]
        )
    )
    result.check(statuses.get("dead_lettered", 0) == messages, f"before the fix: {dict(statuses)}")
    result.check(all("HTTP 400" in r for r in reasons), f"reasons without the status: {reasons}")
    first_attempts = _attempts(stack, flow["id"])
    result.check(set(first_attempts) == {1}, f"a 400 was retried: attempts {set(first_attempts)}")
    assert stack.owner is not None and stack.analyst is not None

    fixed = {**flow["definition"]}
    fixed["steps"] = [dict(s) for s in fixed["steps"]]
    fixed["steps"][0]["expression"] = MAPPING
    fixed_version = stack.approve(flow["id"], fixed)
    selection = {"filter": {"flow": flow["id"]}, "version": "live"}
    status, _ = stack.analyst.raw(
        "POST", "/api/v1/dead-letters/replay", {**selection, "dry_run": False}
    )
    result.check(status == 403, f"an analyst's replay answered {status}, not 403")
    t0 = time.monotonic()
    preview = stack.owner.call("POST", "/api/v1/dead-letters/replay", selection)
    preview_s = time.monotonic() - t0
    actions = Counter(
        (d["step_id"], d["action"]) for run in preview["runs"] for d in run["destinations"]
    )
    versions = Counter(run["version"] for run in preview["runs"])
    result.check(preview["replayable"] == messages, f"preview replayable {preview['replayable']}")
    result.check(
        actions == {("send_oms", "sent"): messages, ("send_audit", "skipped"): messages},
        f"preview actions {dict(actions)}",
    )
    result.check(versions == {fixed_version: messages}, f"preview versions {dict(versions)}")
    audit_before = len(sink.effects("/audit"))
    t0 = time.monotonic()
    replay = stack.owner.call(
        "POST", "/api/v1/dead-letters/replay", {**selection, "dry_run": False}, expect=202
    )
    ids = [run["run_id"] for run in replay["runs"]]
    progress: list[str] = []
    while True:
        state = stack.owner.call(
            "GET", "/api/v1/dead-letters/replay-status?ids=" + ",".join(map(str, ids))
        )
        line = f"{time.monotonic() - t0:5.1f}s " + " ".join(
            f"{k}={v}" for k, v in sorted(state["counts"].items())
        )
        if not progress or progress[-1].split(" ", 1)[1] != line.split(" ", 1)[1]:
            progress.append(line)
        if state["done"]:
            break
        if time.monotonic() - t0 > 300:
            result.check(False, "the replay did not finish within 300 s")
            break
        time.sleep(0.5)
    replay_s = time.monotonic() - t0
    statuses = stack.statuses(flow["id"])
    keys = _keys(stack, flow["id"])
    once = exactly_once(result, sink, "/orders", accepted, keys)
    audit_effects = len(sink.effects("/audit"))
    audited = stack.owner.call("GET", "/api/v1/audit?action=dead_letter.replayed&limit=1")
    attempts = _attempts(stack, flow["id"])
    result.check(statuses.get("succeeded", 0) == messages, f"after the replay: {dict(statuses)}")
    result.check(
        audit_effects == audit_before == messages,
        f"/audit effects {audit_before} -> {audit_effects}: acknowledged re-sent?",
    )
    result.check(audited["total"] == messages, f"audit rows {audited['total']}")
    result.check(replay["replayed"] == messages, f"replayed {replay['replayed']}")
    result.figures = {
        "sent": messages,
        "accepted": len(accepted),
        "dead letters before the fix": f"{messages}; reason: {reasons.most_common(1)}",
        "attempts per dead letter (400 is not retried)": sorted(set(first_attempts)),
        "fix": f"mapping corrected, approved as v{fixed_version} (live)",
        "analyst replay": f"HTTP {status}",
        "preview": f"{preview['replayable']} runs in {preview_s:.1f} s; actions "
        + ", ".join(f"{s} {a} x{n}" for (s, a), n in sorted(actions.items())),
        "replay": f"{replay['replayed']} queued (batch {replay['batch'][:8]}), done in "
        f"{replay_s:.1f} s",
        "replay progress": " | ".join(progress[:8]) + (" | ..." if len(progress) > 8 else ""),
        "runs after": dict(statuses),
        "sink effects /orders": once["effects"],
        "duplicates": once["duplicates"],
        "lost": once["lost"],
        "sink effects /audit (not re-sent)": audit_effects,
        "per-run max attempts (/orders)": max(attempts, default=0),
        "audit rows dead_letter.replayed": audited["total"],
        "time": f"{time.monotonic() - started:.1f} s",
    }
    return result


def shopify_headers(body: bytes, event_id: str) -> dict[str, str]:
    digest = hmac.new(SHOPIFY_SECRET.encode(), body, hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
        "X-Shopify-Event-Id": event_id,
        "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
        "X-Shopify-Topic": "orders/create",
    }


def scenario_dedupe(stack: Stack, events: int = 10, copies: int = 20) -> Result:
    result = Result("dedupe")
    sink = stack.sink()
    assert stack.analyst is not None
    signing = stack.analyst.call(
        "POST",
        "/api/v1/connections",
        {
            "name": "Shopify webhooks",
            "connector": "webhook",
            "secrets": {"signing_secret": SHOPIFY_SECRET},
        },
        expect=201,
    )
    flow = stack.flow(
        f"Shopify {uuid.uuid4().hex[:4]}",
        stack.connection(sink, "OMS (dedupe)"),
        trigger={"event_id_header": "X-Shopify-Event-Id", "signature": {"scheme": "shopify"}},
        trigger_connection_id=signing["id"],
    )
    answers: Counter[int] = Counter()
    runs_per_event: dict[str, set[int]] = {}
    accepted: dict[int, int] = {}
    slowest = 0.0
    for e in range(events):
        number = 500_000 + e
        body, event_id = order_body(number), f"evt-{uuid.uuid4()}"
        headers = shopify_headers(body, event_id)
        barrier = threading.Barrier(copies)

        def one(
            _: int,
            body: bytes = body,
            headers: dict[str, str] = headers,
            barrier: threading.Barrier = barrier,
        ) -> tuple[int, int | None, float]:
            barrier.wait(timeout=30)
            t0 = time.monotonic()
            status, _, raw = http(
                "POST", f"{stack.base}/hooks/{flow['slug']}", body=body, headers=headers, timeout=30
            )
            data = json.loads(raw) if raw else {}
            return status, data.get("run_id"), time.monotonic() - t0

        with ThreadPoolExecutor(max_workers=copies) as pool:
            got = list(pool.map(one, range(copies)))
        answers.update(s for s, _, _ in got)
        slowest = max([slowest, *(t for _, _, t in got)])
        runs_per_event[event_id] = {r for _, r, _ in got if r}
        if len(runs_per_event[event_id]) == 1:
            accepted[number] = next(iter(runs_per_event[event_id]))
    stack.wait_final(flow["id"], events, timeout=120)
    statuses = stack.statuses(flow["id"])
    once = exactly_once(result, sink, "/orders", accepted, _keys(stack, flow["id"]))
    result.check(set(answers) <= {200, 202}, f"answers {dict(answers)}")
    result.check(
        all(len(r) == 1 for r in runs_per_event.values()),
        f"run ids per event: {[len(r) for r in runs_per_event.values()]}",
    )
    result.check(
        sum(statuses.values()) == events and statuses.get("succeeded") == events,
        f"runs {dict(statuses)} for {events} events",
    )
    result.figures = {
        "events": events,
        "copies per event (concurrent)": copies,
        "requests": events * copies,
        "answers": dict(sorted(answers.items())),
        "distinct run ids per event": sorted({len(r) for r in runs_per_event.values()}),
        "runs": dict(statuses),
        "sink effects": once["effects"],
        "duplicates": once["duplicates"],
        "lost": once["lost"],
        "slowest answer": f"{slowest * 1000:.0f} ms",
    }
    return result


def scenario_hostile(stack: Stack, which: list[str] | None = None) -> Result:
    result = Result("hostile")
    sink = stack.sink()
    connection_id = stack.connection(sink, "OMS (hostile)")
    good = stack.flow(f"Good {uuid.uuid4().hex[:4]}", connection_id)
    pids_before = sorted(w.pid for w in stack.workers)
    timings: list[str] = []
    for name, expression in HOSTILE:
        if which is not None and name not in which:
            continue
        try:
            flow = stack.flow(
                f"Hostile {name[:30]} {uuid.uuid4().hex[:4]}", connection_id, mapping=expression
            )
        except StackError as exc:
            # Refused when the draft is saved (422): no version holding it can be approved,
            # so no run can ever evaluate it. Stricter than a run failing; reported as such.
            refused = "/draft -> 422" in str(exc) and "invalid_expression" in str(exc)
            detail = re.search(r"'message': '([^']{0,80})", str(exc))
            result.check(refused, f"{name}: could not be approved: {str(exc)[:300]}")
            timings.append(
                f"{name}: refused when the draft is saved (422 invalid_expression: "
                f"{detail.group(1) if detail else '?'}); no run can exist"
            )
            continue
        t0 = time.monotonic()
        posted = post_orders(stack, flow["slug"], [600_000], clients=1)
        status, run_id = posted[600_000]
        if status != 202 or run_id is None:
            result.check(False, f"{name}: webhook answered {status}")
            continue
        done = stack.wait_final(flow["id"], 1, timeout=60)
        row = stack.rows(
            "SELECT r.status, r.reason, s.error, s.duration_ms FROM runs r JOIN run_steps s "
            "ON s.run_id = r.id AND s.step_id = 'to_oms_order' WHERE r.id = :r "
            "ORDER BY s.id DESC LIMIT 1",
            r=run_id,
        )
        if not row:
            result.check(False, f"{name}: no map step recorded")
            continue
        run_status, reason, error, duration_ms = row[0]
        error = error if isinstance(error, dict) else json.loads(error or "null") or {}
        code = error.get("code")
        timings.append(
            f"{name}: {run_status}/{code} step {duration_ms:.0f} ms, "
            f"accept->final {(done - t0) * 1000:.0f} ms"
        )
        result.check(
            run_status == "dead_lettered" and code == "resource_limit",
            f"{name}: run {run_status}, step error {code}: {reason}",
        )
        result.check(
            duration_ms < HOSTILE_LIMIT_S * 1000, f"{name}: the map step took {duration_ms:.0f} ms"
        )
    stack.procs.check_alive()
    pids_after = sorted(w.pid for w in stack.workers if w.alive())
    posted = post_orders(stack, good["slug"], [600_001], clients=1)
    t0 = time.monotonic()
    stack.wait_final(good["id"], 1, timeout=30)
    good_s = time.monotonic() - t0
    statuses = stack.statuses(good["id"])
    result.check(pids_after == pids_before, f"workers {pids_before} -> {pids_after}")
    result.check(statuses == Counter({"succeeded": 1}), f"the normal run after: {dict(statuses)}")
    result.check(len(sink.effects("/orders")) == 1, "the normal run did not reach the sink")
    result.figures = {
        **{f"#{i + 1}": t for i, t in enumerate(timings)},
        "limit": f"{HOSTILE_LIMIT_S:.0f} s per step (FLOWGATE_MAPPING_TIMEOUT_MS="
        f"{stack.env.get('FLOWGATE_MAPPING_TIMEOUT_MS', '1000 (default)')})",
        "worker pids before/after": f"{pids_before} / {pids_after}",
        "normal run afterwards": f"{dict(statuses)} in {good_s:.1f} s",
    }
    return result


SCENARIOS = ("kills", "flaky", "outage", "bad_request", "dedupe", "hostile")

# Faster recovery than the defaults (a 120 s lease would make each kill cost two minutes);
# the breaker keeps its production defaults (threshold 5, cool-down 30 s).
BENCH_SETTINGS = {
    "FLOWGATE_RUN_LEASE_SECONDS": "15",
    "FLOWGATE_SWEEP_INTERVAL_SECONDS": "1",
    "FLOWGATE_REQUEUE_AFTER_SECONDS": "5",
}


def run(args: argparse.Namespace) -> list[Result]:
    chosen = SCENARIOS if args.scenario == "all" else (args.scenario,)
    stack = Stack(pg_admin_url=args.pg_url, redis_url=args.redis_url, settings=BENCH_SETTINGS)
    results: list[Result] = []
    try:
        stack.start()
        for name in chosen:
            log(f"scenario {name}")
            started = time.monotonic()
            try:
                if name == "kills":
                    res = scenario_kills(stack, messages=args.messages)
                elif name == "flaky":
                    res = scenario_flaky(stack)
                elif name == "outage":
                    res = scenario_outage(stack, seconds=args.outage_seconds)
                elif name == "bad_request":
                    res = scenario_bad_request(stack)
                elif name == "dedupe":
                    res = scenario_dedupe(stack)
                else:
                    res = scenario_hostile(stack)
            except (StackError, AssertionError) as exc:
                res = Result(name)
                res.check(False, f"could not run: {str(exc)[:3000]}")
            res.seconds = time.monotonic() - started
            results.append(res)
            print(res.table(), flush=True)
    finally:
        if args.keep_logs:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for proc in stack.procs.procs:
                with contextlib.suppress(OSError):
                    shutil.copy(proc.log_path, args.keep_logs / proc.log_path.name)
        stack.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=("all", *SCENARIOS), default="all")
    parser.add_argument("--messages", type=int, default=2000, help="orders in scenario kills")
    parser.add_argument("--outage-seconds", type=float, default=120)
    parser.add_argument("--pg-url", default=PG_ADMIN_DEFAULT)
    parser.add_argument("--redis-url", default=REDIS_DEFAULT)
    parser.add_argument(
        "--keep-logs",
        type=Path,
        default=None,
        help="copy the processes' logs there before cleaning up",
    )
    args = parser.parse_args(argv)
    results = run(args)
    print("\nsummary")
    for res in results:
        print(f"  {res.scenario:<12} {'PASS' if res.passed else 'FAIL'}  {res.seconds:7.1f} s")
    failed = [r.scenario for r in results if not r.passed]
    ran = {r.scenario for r in results}
    expected = set(SCENARIOS if args.scenario == "all" else (args.scenario,))
    return 1 if failed or ran != expected else 0


if __name__ == "__main__":
    venv = ROOT / ".venv" / "bin" / "python"
    if venv.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        os.execv(str(venv), [str(venv), *sys.argv])  # the processes need the venv
    sys.exit(main())
