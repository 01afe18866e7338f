"""A drain job lingers (issue #5): after the queue is empty it keeps polling for a while,
holding its wake marker, so arrivals under steady traffic need no new RQ job.

* a run committed while a job lingers enqueues no job and is still executed;
* a job that has lingered its time clears the marker: the next run gets a job again;
* a stop request (the worker's SIGTERM) ends the lingering at once;
* a stop request in the middle of a batch: the run in flight finishes, the rest of the
  batch goes back to the queue, and a successor job is enqueued for it;
* a worker stopped while idle may have dropped a drain job it had just dequeued: it
  enqueues one past the wake markers on its way out.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
from rq.exceptions import StopRequested
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus
from sqlalchemy import update

from app import worker as worker_module
from app.extensions import db
from app.models import Run
from app.queues import run_queue
from app.redis_conn import get_redis
from app.stores import SqlRunStore
from flows import jobs
from flows.execution import DrainLimits, drain
from tests.app.test_batch_drain import _jobs, _statuses
from tests.app.test_execution import post_order
from tests.app.test_walking_skeleton import ORDER, live_flow
from tests.support.processes import wait_for
from tests.support.sink import Answer


@pytest.fixture
def lingering(app):
    """The engine configured with a linger time; ``start`` runs the drain job that intake's
    wake enqueued in a thread (what the worker does, minus RQ, whose signal handlers need
    the main thread) and empties the RQ queue of it."""
    app.config["FLOWGATE_WAKE_SLOTS"] = 1
    threads: list[threading.Thread] = []

    def start(linger_seconds: float) -> threading.Thread:
        app.config["FLOWGATE_DRAIN_LINGER_SECONDS"] = linger_seconds
        worker_module.configure_engine(app)
        assert _jobs(app) == 1
        run_queue(app).empty()
        thread = threading.Thread(target=jobs.drain_runs, args=(0,), daemon=True)
        thread.start()
        threads.append(thread)
        return thread

    yield start
    worker_module.stopping.set()
    for thread in threads:
        thread.join(timeout=10)
    worker_module.stopping.clear()


def test_a_run_arriving_while_the_job_lingers_needs_no_new_job(
    client, make_user, sink, app, lingering
):
    ctx = live_flow(client, make_user, sink)
    first = post_order(client, ctx)
    thread = lingering(2.0)  # long enough for a slow machine to post the second run
    wait_for(lambda: _statuses([first]) == ["succeeded"], timeout=10, what="the first run")

    second = post_order(client, ctx, dict(ORDER, order_number=2))
    assert _jobs(app) == 0  # the lingering job holds the marker: intake enqueued nothing
    wait_for(lambda: _statuses([second]) == ["succeeded"], timeout=5, what="the second run")
    assert thread.is_alive()  # executed by the job that lingered

    thread.join(timeout=10)  # ends 2 s after its last run
    assert not thread.is_alive()
    third = post_order(client, ctx, dict(ORDER, order_number=3))
    assert _jobs(app) == 1  # the marker was cleared: the next arrival enqueues a job
    assert _statuses([third]) == ["queued"]
    assert len(sink.requests) == 2


def test_a_stop_request_ends_the_lingering_at_once(
    client, make_user, sink, app, lingering, run_worker
):
    ctx = live_flow(client, make_user, sink)
    first = post_order(client, ctx)
    thread = lingering(60)
    wait_for(lambda: _statuses([first]) == ["succeeded"], timeout=10, what="the first run")
    time.sleep(0.1)
    assert thread.is_alive()  # lingering: it would poll for a minute

    asked = time.monotonic()
    worker_module.stopping.set()  # what DrainWorker.request_stop does on SIGTERM
    thread.join(timeout=5)
    assert not thread.is_alive() and time.monotonic() - asked < 2
    worker_module.stopping.clear()
    # It cleared its marker and, not having claimed until empty after that, woke a
    # successor (which covers any run whose wake found the held marker).
    assert _jobs(app) == 1
    second = post_order(client, ctx, dict(ORDER, order_number=2))
    assert _jobs(app) == 1  # that job is pending: intake needs no other
    app.config["FLOWGATE_DRAIN_LINGER_SECONDS"] = 0  # the burst worker below: no lingering
    worker_module.configure_engine(app)
    run_worker()
    assert _statuses([second]) == ["succeeded"]


def test_a_poll_takes_one_short_batch_and_leaves_crashed_runs_to_the_last_drain(
    client, make_user, sink, app, monkeypatch
):
    ctx = live_flow(client, make_user, sink)
    ids = [post_order(client, ctx, dict(ORDER, order_number=n)) for n in (1, 2, 3)]
    db.session.execute(update(Run).where(Run.id == ids[0]).values(crash_count=1))
    db.session.commit()
    store, claims = SqlRunStore(), []
    real_claim = SqlRunStore._claim_queued

    def counted(self, limit, lease_seconds, *, crashed):
        claims.append(crashed)
        return real_claim(self, limit, lease_seconds, crashed=crashed)

    monkeypatch.setattr(SqlRunStore, "_claim_queued", counted)
    runner, limits = worker_module.build_runner(app), DrainLimits(batch=16)
    assert drain(store=store, runner=runner, lease_seconds=60, limits=limits, poll=True) == 2
    assert claims == [False]  # one claim: the batch was short, so nothing else was queued
    assert _statuses(ids) == ["queued", "succeeded", "succeeded"]
    db.session.remove()
    claims.clear()
    assert drain(store=store, runner=runner, lease_seconds=60, limits=limits) == 1
    assert _statuses(ids) == ["succeeded"] * 3
    assert claims == [False, True, False, True]  # until a claim of each kind came back empty


def test_a_stop_request_mid_batch_finishes_the_run_in_flight_and_hands_the_rest_on(
    client, make_user, sink, app, run_worker
):
    app.config["FLOWGATE_WAKE_SLOTS"] = 1
    # One batch takes all 7 (not full: it wakes nobody), so only the stop can wake a successor.
    app.config["FLOWGATE_RUN_BATCH_SIZE"] = 8
    ctx = live_flow(client, make_user, sink)
    ids = [post_order(client, ctx, dict(ORDER, order_number=n)) for n in range(1, 8)]
    worker_module.configure_engine(app)
    run_queue(app).empty()  # this test runs intake's drain job itself
    sink.scripted = [Answer(), Answer(delay=0.5)]  # the second delivery is held

    def sigterm_during_the_second_delivery() -> None:
        wait_for(lambda: len(sink.requests) >= 2, timeout=10, what="the second delivery")
        worker_module.stopping.set()  # what DrainWorker.request_stop does on SIGTERM

    signaller = threading.Thread(target=sigterm_during_the_second_delivery, daemon=True)
    signaller.start()
    try:
        assert jobs.drain_runs(0) == 2
    finally:
        signaller.join(timeout=10)
        worker_module.stopping.clear()
    assert len(sink.requests) == 2
    assert _statuses(ids) == ["succeeded"] * 2 + ["queued"] * 5  # given back: not running
    assert _jobs(app) == 1  # the successor, which the next worker takes
    run_worker()
    assert _statuses(ids) == ["succeeded"] * 7
    assert sorted(sink.effects().values()) == [1] * 7


def test_a_worker_stopped_while_idle_hands_a_dropped_drain_job_on(
    client, make_user, sink, app, run_worker
):
    """RQ ends an idle worker at once, also just after it took a drain job off the queue:
    that job is gone and its marker holds back wakes until its TTL. ``hand_on`` enqueues
    a drain job past the markers."""
    app.config["FLOWGATE_WAKE_SLOTS"] = 1
    ctx = live_flow(client, make_user, sink)
    run_id = post_order(client, ctx)
    run_queue(app).empty()  # the dequeued job that was never run: its marker stays
    post_order(client, ctx, dict(ORDER, order_number=2))
    assert _jobs(app) == 0  # held back by that marker
    worker_module.hand_on(app)
    assert _jobs(app) == 1
    run_worker()
    assert _statuses([run_id, run_id + 1]) == ["succeeded", "succeeded"]


@pytest.mark.parametrize("busy", [False, True])
def test_the_worker_knows_whether_a_stop_found_it_idle(app, busy):
    worker = worker_module.DrainWorker(
        [run_queue(app)], connection=get_redis(app), serializer=JSONSerializer
    )
    worker.set_state(WorkerStatus.BUSY if busy else WorkerStatus.IDLE)
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if busy:  # RQ's warm shutdown: the job in hand is finished first
            worker.request_stop(signal.SIGTERM, None)
            assert worker._stop_requested
        else:  # RQ stops an idle worker at once
            with pytest.raises(StopRequested):
                worker.request_stop(signal.SIGTERM, None)
        assert worker_module.stopping.is_set()
        assert worker.stopped_idle is not busy
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        worker_module.stopping.clear()
