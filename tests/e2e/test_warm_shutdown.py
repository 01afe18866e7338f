"""Warm shutdown of a worker with work in flight (a deploy's SIGTERM; reliability case 3).

Webhooks keep arriving while the one worker delivers them to a slow sink. The worker gets
SIGTERM while a delivery is held by the sink. It must finish that run, start no other (the
rest of its batch goes back to ``queued`` untouched, no new batch is claimed), leave no run
``running`` under a lease, and exit within a few seconds, far inside the drain budget
(30 s) and a supervisor's grace. A new worker, with no scheduler to sweep, must then take
every queued run: one effect per idempotency key, every run on its first attempt.
"""

# ruff: noqa: F811 - the shared fixtures are imported by name and requested as arguments
from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from tests.e2e.test_processes import (  # noqa: F401 - fixtures
    BackgroundPoster,
    delivery_rows,
    live_flow,
    procs,
    run_id_of,
    run_statuses,
    stack_env,
    wait_all_final,
    wait_for_sink,
)
from tests.support.processes import free_port, wait_http
from tests.support.sink import Answer

pytestmark = pytest.mark.slow

TOTAL = 200
STOP_AT = 41  # the delivery in flight when SIGTERM arrives (the sink holds it)
HOLD = 1.0
EXIT_WITHIN = 5.0  # seconds from SIGTERM to exit; the drain budget is 30 s


def _run_attempts() -> dict[int, int]:
    from sqlalchemy import select

    from app.extensions import db
    from app.models import Run

    try:
        return dict(db.session.execute(select(Run.id, Run.attempts)).all())
    finally:
        db.session.rollback()


def _stop(worker: Any) -> float:
    """SIGTERM to the worker process alone (what a supervisor sends first); seconds to exit."""
    worker.expected_dead = True
    asked = time.monotonic()
    worker.popen.send_signal(signal.SIGTERM)
    worker.popen.wait(timeout=60)
    return time.monotonic() - asked


def test_a_warm_shutdown_finishes_the_run_in_hand_and_hands_the_rest_on(
    app, make_user, sink, procs, stack_env
):
    sink.default = Answer(delay=0.05)
    sink.scripted = [Answer(delay=0.05)] * (STOP_AT - 1) + [Answer(delay=HOLD)]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    procs.web(stack_env, port)
    worker = procs.worker(stack_env)
    slug = live_flow(app, make_user, sink)  # while the processes boot
    wait_http(f"{base}/healthz", timeout=40, procs=procs, ok={200})

    poster = BackgroundPoster(base, slug, TOTAL, first_number=6000)
    wait_for_sink(sink, STOP_AT, procs=procs, timeout=60)
    exit_seconds = _stop(worker)  # while delivery #STOP_AT is held by the sink
    delivered_at_exit = len(sink.requests)
    at_exit = run_statuses()
    assert worker.popen.returncode == 0, worker.log()
    assert exit_seconds < EXIT_WITHIN, (exit_seconds, worker.log())

    run_ids = poster.finish(timeout=120)

    # The run in flight was finished; no delivery started after SIGTERM; nothing is left
    # ``running`` (the unstarted batch-mates were given back, no new batch was claimed).
    assert delivered_at_exit == STOP_AT, delivered_at_exit
    in_flight = run_id_of(sink.requests[STOP_AT - 1].headers["Idempotency-Key"])
    assert at_exit["succeeded"] == run_ids[:STOP_AT] and in_flight == run_ids[STOP_AT - 1]
    assert "running" not in at_exit, at_exit
    assert at_exit.get("queued") and set(at_exit["queued"]) <= set(run_ids[STOP_AT:]), at_exit

    restarted = time.monotonic()
    successor = procs.worker(stack_env)  # no scheduler: only the wakes bring the work to it
    statuses = wait_all_final(TOTAL, timeout=90, procs=procs)
    drained_in = time.monotonic() - restarted
    assert statuses == {"succeeded": run_ids}, statuses

    effects = sink.effects()
    assert sorted(run_id_of(k) for k in effects) == run_ids
    assert set(effects.values()) == {1}, {k: n for k, n in effects.items() if n > 1}
    deliveries = delivery_rows()
    assert {rid: row[:2] for rid, row in deliveries.items()} == dict.fromkeys(
        run_ids, ("acknowledged", 1)
    )
    assert set(_run_attempts().values()) == {1}  # none lost a lease or was claimed twice

    # An idle worker stops at once too.
    idle_exit_seconds = _stop(successor)
    assert successor.popen.returncode == 0, successor.log()
    assert idle_exit_seconds < EXIT_WITHIN, (idle_exit_seconds, successor.log())
    print(
        f"busy worker exited {exit_seconds:.2f}s after SIGTERM (held delivery: {HOLD}s), "
        f"{len(at_exit.get('queued', []))} runs left queued; successor drained them in "
        f"{drained_in:.1f}s; idle worker exited {idle_exit_seconds:.2f}s after SIGTERM"
    )
