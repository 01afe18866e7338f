"""RQ worker process: the composition root of the engine (``python -m app.worker``).

It uses RQ's non-forking ``SimpleWorker``: forking per job costs ~5x throughput here
(60 vs 365 jobs/s measured), and our isolation comes from the SQL claim, bounded JSONata
evaluation and per-call timeouts rather than from a fresh process per job.

A job drains queued runs in batches (``flows.jobs.drain_runs``, woken by ``app.queues.wake``)
rather than executing one run: RQ's bookkeeping and the claim's commit are paid per batch.
``FLOWGATE_RUN_BATCH_SIZE`` (default 16) bounds a batch. A job that emptied the queue
lingers for ``FLOWGATE_DRAIN_LINGER_SECONDS`` (default 1), claiming every 10 ms, before it
ends (see ``linger`` below).

Warm shutdown (a deploy's SIGTERM, or Ctrl-C): ``stopping`` is set, RQ lets the job in
hand return and then exits. A drain job then finishes the run it is delivering, gives the
rest of its batch back to ``queued`` untouched, claims no new batch, ends any lingering,
and wakes a successor drain job for the runs left (``flows.execution.drain``), which
another worker, or the next one to start, takes at once. A second SIGTERM/SIGINT is RQ's
cold shutdown (immediate exit; leases and the sweep cover what was in flight).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from app import create_app, queues, runtime
from app.extensions import db
from app.logging_setup import configure_logging, level_from_env
from app.queues import run_queue
from app.redis_conn import get_redis, warn_on_unsafe_eviction_policy
from app.stores import SqlConnectionResolver, SqlDeliveryLedger, SqlRunStore
from flows import jobs
from flows.engine import FlowRunner
from flows.execution import DrainLimits, drain, execute_run

log = logging.getLogger("flowgate.worker")

# How often a lingering drain job looks for new runs (one claim statement when idle): the
# most a run waits in the queue while a job lingers.
LINGER_POLL_SECONDS = 0.01
# Set when the worker is asked to stop: a drain job claims no new batch, starts no further
# run of its batch, and does not linger (see ``DrainWorker``).
stopping = threading.Event()
# After RQ's work loop ended on its own (Redis went away under a job): the first pause
# before starting it again, doubling up to the maximum while loops keep ending quickly; a
# loop that ran STEADY_SECONDS starts the count again.
RESTART_PAUSE_SECONDS = 0.5
MAX_RESTART_PAUSE_SECONDS = 30.0
STEADY_SECONDS = 60.0


def build_runner(app: Flask) -> FlowRunner:
    """The engine with its ports wired to SQL, Redis and the sandbox."""
    lease = app.config["FLOWGATE_RUN_LEASE_SECONDS"]
    return FlowRunner(
        registry=runtime.registry(app),
        connections=SqlConnectionResolver(runtime.secret_box(app), per_batch=True),
        deliveries=SqlDeliveryLedger(lease),
        http=runtime.http_session(app),
        key_prefix=runtime.idempotency_prefix(app),
        evaluator=runtime.mapping_evaluator(app),
        gate=runtime.delivery_gate(app),
        egress=runtime.egress_policy(app),
    )


def configure_engine(app: Flask) -> None:
    """Install the executor and the drainer used by ``flows.jobs``."""
    lease = app.config["FLOWGATE_RUN_LEASE_SECONDS"]
    runner = build_runner(app)
    store = SqlRunStore()

    def execute(run_id: int) -> object:
        with app.app_context():
            try:
                return execute_run(run_id, store=store, runner=runner, lease_seconds=lease)
            finally:
                db.session.remove()

    jobs.configure(execute, _DrainJob(app, store, runner).run)


class _DrainJob:
    """``flows.jobs.drain_runs``: claim until empty, then linger (see ``linger``)."""

    def __init__(self, app: Flask, store: SqlRunStore, runner: FlowRunner) -> None:
        self.app, self.store, self.runner = app, store, runner
        self.lease = app.config["FLOWGATE_RUN_LEASE_SECONDS"]
        batch = app.config.get("FLOWGATE_RUN_BATCH_SIZE") or os.environ.get(
            "FLOWGATE_RUN_BATCH_SIZE"
        )
        self.limits = DrainLimits(batch=max(1, int(batch or 16)))
        self.linger_seconds = float(app.config.get("FLOWGATE_DRAIN_LINGER_SECONDS") or 0)

    def run(self, slot: int) -> int:
        with self.app.app_context():
            try:
                # Before the first claim: the argument in app.queues depends on this order.
                queues.clear_wake(self.app, slot)
                executed = self.until_empty(slot)
                if self.linger_seconds > 0 and slot != queues.ALL_SLOTS and not stopping.is_set():
                    executed += self.linger(slot)
                return executed
            finally:
                db.session.remove()

    def until_empty(self, slot: int, *, poll: bool = False) -> int:
        return drain(
            store=self.store,
            runner=self.runner,
            lease_seconds=self.lease,
            limits=self.limits,
            more_work=lambda: self.wake_next(slot),
            poll=poll,
            should_stop=stopping.is_set,
        )

    def wake_next(self, slot: int) -> None:
        try:
            queues.wake(self.app, slot + 1)
        except Exception:  # best effort: a batch in hand must not be dropped for it
            log.warning("worker.wake_failed slot=%s", slot + 1, exc_info=True)

    def linger(self, slot: int) -> int:
        """Poll for new runs while holding the slot's wake marker, until ``linger_seconds``
        pass without one (or the job's budget is spent, or the worker is told to stop).

        Why: under steady traffic a drain job empties the queue within milliseconds, so
        without this every few arrivals cost a new RQ job (~20 Redis round trips and the
        job's bookkeeping) and intake an enqueue. Holding the marker keeps intake from
        enqueuing one (``app.queues.hold_wake``); the price is one empty claim per poll
        interval while idle, for at most ``linger_seconds``. Measured: bench/README.md,
        round 5.
        """
        if not queues.hold_wake(self.app, slot):
            return 0  # a job for this slot is queued already: it takes over
        executed, started = 0, time.monotonic()
        idle_since = started
        try:
            while not stopping.wait(LINGER_POLL_SECONDS):
                now = time.monotonic()
                if now - started > self.limits.budget_seconds:
                    break  # the last drain below wakes a successor if work is left
                ran = self.until_empty(slot, poll=True)
                executed += ran
                if ran:
                    idle_since = time.monotonic()
                elif now - idle_since >= self.linger_seconds:
                    break
        finally:
            queues.clear_wake(self.app, slot)
        # A run whose wake found our marker (and so enqueued no job) was committed before
        # the marker was cleared: claiming until empty once more after it sees that run
        # (after a stop request this claims nothing and wakes a successor instead).
        return executed + self.until_empty(slot)


class DrainWorker(SimpleWorker):
    """RQ's non-forking worker that also tells the drain job in hand to stop on the first
    SIGTERM/SIGINT (RQ's warm shutdown waits for the job in hand, then exits).

    ``stopped_idle``: the stop came while no job was in hand. RQ then raises at once, also
    in the moment between taking a job off the queue and starting it: that drain job is
    dropped, and its wake marker (``app.queues``) holds back wakes until its TTL. ``main``
    hands on with ``hand_on`` then."""

    stopped_idle = False
    # RQ's wait between reconnection attempts while dequeuing doubles up to this (its
    # default, 60 s, could leave new work waiting a minute after Redis is back).
    max_connection_wait_time = 5.0

    def request_stop(self, signum: Any, frame: Any) -> None:
        stopping.set()
        self.stopped_idle = self.get_state() != WorkerStatus.BUSY
        super().request_stop(signum, frame)


def hand_on(app: Flask) -> None:
    """After a stop that may have dropped a dequeued drain job: enqueue a drain job past
    the markers (``wake(force=True)``, the sweep's remedy for a marker whose job is gone),
    so that runs whose wake found that marker are not left until its TTL and the sweep.
    It costs one drain job per stopped idle worker; a lost call leaves it to the sweep."""
    try:
        with app.app_context():
            queues.wake(app, force=True)
    except Exception as exc:  # exiting anyway: no traceback for a Redis that went first
        log.warning("worker.hand_on_failed error=%r", exc)


def work_until_stopped(app: Flask, make_worker: Callable[[], DrainWorker]) -> DrainWorker:
    """Run RQ's work loop until a stop is requested, starting it again when it ends on
    its own.

    RQ reconnects to Redis only while it waits for a job. When Redis goes away while a
    job is being finished (its status, heartbeat or registries), RQ logs "found an
    unhandled exception, quitting" and its loop ends, or its teardown raises: a Redis
    restart would take the worker process down, and under honcho (``make run``) every
    other process with it. Instead the loop is started again once Redis answers, in the
    same process (reliability case 6). Runs are not at risk meanwhile: SQL holds them, and
    a run whose job was lost is re-queued by the sweep.
    """
    pause = RESTART_PAUSE_SECONDS
    while True:
        worker = make_worker()
        began = time.monotonic()
        try:
            worker.work(with_scheduler=False, logging_level=level_from_env())
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("worker.redis_lost error=%s", exc)  # teardown could not reach it
        if stopping.is_set():
            return worker
        # Between two work loops RQ's handlers (which raise inside whatever runs) must not
        # fire: a stop now only ends the wait below.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
        if time.monotonic() - began > STEADY_SECONDS:
            pause = RESTART_PAUSE_SECONDS  # a loop that ran a while starts the count again
        log.error("worker.loop_ended_restarting pause=%.0fs", pause)
        if stopping.wait(pause) or not _wait_for_redis(app):
            return worker
        pause = min(pause * 2, MAX_RESTART_PAUSE_SECONDS)


def _wait_for_redis(app: Flask) -> bool:
    """True once Redis answers a PING; False when a stop came first."""
    delay = RESTART_PAUSE_SECONDS
    while True:
        try:
            get_redis(app).ping()
            return True
        except redis.RedisError:
            if stopping.wait(delay):
                return False
            delay = min(delay * 2, DrainWorker.max_connection_wait_time)


def main() -> None:
    configure_logging()  # FLOWGATE_LOG_FORMAT (json by default) and FLOWGATE_LOG_LEVEL
    app = create_app()
    configure_engine(app)
    warn_on_unsafe_eviction_policy(app)
    # The sandbox children start now, not on the first run's map step (their start-up
    # would count against that step's time limit).
    runtime.mapping_evaluator(app).warm_up()
    with app.app_context():
        queue = run_queue(app)
    worker = work_until_stopped(
        app,
        lambda: DrainWorker([queue], connection=get_redis(app), serializer=JSONSerializer),
    )
    if worker.stopped_idle:
        hand_on(app)


if __name__ == "__main__":
    main()
