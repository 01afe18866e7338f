"""Batched execution (issue #5): drain jobs claim queued runs N at a time and commit per batch.

* the batch claim is a compare-and-set between workers: two stores never get the same run,
  a row another transaction holds is skipped, not waited for (PostgreSQL ``SKIP LOCKED``);
* a run that lost a lease before is claimed alone (the crash budget of its batch-mates);
* inside a batch each run's final write stays fenced by its own attempt number, and the
  deferred final writes are committed by the next run's ``sending`` commit;
* the wake marker never strands a committed run, in every interleaving with a drain job;
* a batch stops at its time budget and gives back the runs it has not started;
* a drain asked to stop (the worker's SIGTERM) finishes the run in flight, gives back the
  rest of its batch, claims no new batch and wakes a successor.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app import queues
from app.extensions import db
from app.models import Run
from app.models._types import utcnow
from app.queues import run_queue, wake
from app.services.sweep import sweep
from app.stores import SqlRunStore
from flows.execution import DrainLimits, drain
from flows.results import RunResult, RunStatus, StepResult, StepStatus
from tests.app.test_execution import post_order, run_row
from tests.app.test_walking_skeleton import ORDER, live_flow


def _post(client, ctx, count: int) -> list[int]:
    return [post_order(client, ctx, dict(ORDER, order_number=9000 + i)) for i in range(count)]


def _statuses(ids: list[int]) -> list[str]:
    db.session.expire_all()
    return [db.session.get(Run, i).status for i in ids]


def _is_sqlite(app) -> bool:
    return app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")


def test_batch_claim_takes_the_oldest_queued_runs_once(client, make_user, sink, app):
    ctx = live_flow(client, make_user, sink)
    ids = _post(client, ctx, 5)
    a, b = SqlRunStore(), SqlRunStore()
    first = a.claim_batch(3, lease_seconds=60)
    assert [c.run_id for c in first] == ids[:3]
    assert all(c.attempts == 1 and c.first for c in first)
    assert first[0].definition["steps"][0]["id"] == "only_paid"
    db.session.remove()
    second = b.claim_batch(3, lease_seconds=60)
    assert [c.run_id for c in second] == ids[3:]
    db.session.remove()
    assert a.claim_batch(3, lease_seconds=60) == []
    # A claimed run is not claimable by id either while its lease lives.
    assert b.claim(ids[0], lease_seconds=60) is None
    assert _statuses(ids) == ["running"] * 5


def test_two_stores_draining_concurrently_never_share_a_run(client, make_user, sink, app):
    if _is_sqlite(app):
        pytest.skip("SQLite serialises writers; the race needs PostgreSQL")
    ctx = live_flow(client, make_user, sink)
    ids = _post(client, ctx, 40)
    db.session.remove()
    taken: dict[str, list[int]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def take(name: str) -> None:
        store = SqlRunStore()
        with app.app_context():
            barrier.wait()
            try:
                while batch := store.claim_batch(3, lease_seconds=60):
                    taken[name].extend(c.run_id for c in batch)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=take, args=(n,)) for n in taken]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not set(taken["a"]) & set(taken["b"])
    assert sorted(taken["a"] + taken["b"]) == ids
    assert taken["a"] and taken["b"]  # both made progress: neither waited for the other
    assert {run_row(i).attempts for i in ids} == {1}


def test_a_row_held_by_another_transaction_is_skipped_not_waited_for(client, make_user, sink, app):
    if _is_sqlite(app):
        pytest.skip("row locks are PostgreSQL's (SQLite has one writer at a time)")
    ctx = live_flow(client, make_user, sink)
    ids = _post(client, ctx, 4)
    db.session.remove()
    other = db.engine.connect()
    try:
        other.execute(select(Run.id).where(Run.id == ids[0]).with_for_update())
        got = SqlRunStore().claim_batch(10, lease_seconds=60)
        assert [c.run_id for c in got] == ids[1:]  # at once, without the locked one
    finally:
        other.rollback()
        other.close()
    db.session.remove()
    assert [c.run_id for c in SqlRunStore().claim_batch(10, lease_seconds=60)] == ids[:1]


def test_a_run_that_lost_a_lease_is_claimed_alone(client, make_user, sink, app):
    ctx = live_flow(client, make_user, sink)
    ids = _post(client, ctx, 4)
    db.session.execute(update(Run).where(Run.id.in_(ids[:2])).values(crash_count=1))
    db.session.commit()
    store = SqlRunStore()
    assert [c.run_id for c in store.claim_batch(10, lease_seconds=60)] == ids[2:]
    assert [c.run_id for c in store.claim_batch(10, lease_seconds=60)] == ids[:1]
    assert [c.run_id for c in store.claim_batch(10, lease_seconds=60)] == ids[1:2]
    assert store.claim_batch(10, lease_seconds=60) == []


def test_finish_in_a_batch_stays_fenced_per_run(client, make_user, sink, app, caplog):
    ctx = live_flow(client, make_user, sink)
    ids = _post(client, ctx, 2)
    a, b = SqlRunStore(), SqlRunStore()
    lost, kept = a.claim_batch(2, lease_seconds=60)
    # A stalls: the first run's lease runs out and B takes it over (attempt 2).
    db.session.execute(
        update(Run).where(Run.id == ids[0]).values(lease_until=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    taken = b.claim(ids[0], lease_seconds=60)
    assert taken is not None and taken.attempts == 2
    done = RunResult(RunStatus.SUCCEEDED, [StepResult("only_paid", StepStatus.SUCCEEDED)])
    # Deferred: both are written by A's commit (the batch's flush), each fenced on its own.
    assert a.finish(lost, done, commit=False) is True
    assert a.finish(kept, done, commit=False) is True
    assert run_row(ids[1]).status == "running"  # nothing written before the flush
    with caplog.at_level("WARNING", logger="flowgate.execution"):
        a.commit()
    assert [r.getMessage() for r in caplog.records if "lease_lost" in r.getMessage()] == [
        f"run.lease_lost run_id={ids[0]} attempt=1"
    ]
    db.session.remove()
    first, second = run_row(ids[0]), run_row(ids[1])
    assert first.status == "running" and first.attempts == 2 and first.steps == []
    assert second.status == "succeeded" and [s.attempt for s in second.steps] == [1]


def test_a_drain_executes_every_queued_run_in_batches(client, make_user, sink, run_worker, app):
    app.config["FLOWGATE_RUN_BATCH_SIZE"] = 3
    ctx = live_flow(client, make_user, sink)
    ids = _post(client, ctx, 7)
    run_worker()
    assert _statuses(ids) == ["succeeded"] * 7
    keys = [r.headers["Idempotency-Key"] for r in sink.requests]
    assert len(keys) == 7 == len(set(keys))
    assert all(len(run_row(i).steps) == 3 for i in ids)


def test_a_batch_past_its_budget_gives_back_the_runs_it_has_not_started(
    client, make_user, sink, app
):
    from app.worker import build_runner

    ctx = live_flow(client, make_user, sink)
    ids = _post(client, ctx, 4)
    store = SqlRunStore()
    # Five readings inside the budget (start, loop, batch, first run's two checks), then
    # the batch has run past its release time before the second run starts.
    ticks = iter([0.0] * 5)

    def clock() -> float:
        return next(ticks, 1000.0)

    woken: list[bool] = []
    executed = drain(
        store=store,
        runner=build_runner(app),
        lease_seconds=60,
        limits=DrainLimits(batch=4, budget_seconds=10, release_after_seconds=100),
        more_work=lambda: woken.append(True),
        clock=clock,
    )
    db.session.remove()
    assert executed == 1
    assert _statuses(ids) == ["succeeded", "queued", "queued", "queued"]
    assert woken  # a successor was asked for: the work left must not wait for the sweep
    # Given back untouched: no lease, and the claim taken back (the next is a first attempt).
    assert run_row(ids[1]).lease_until is None and run_row(ids[1]).attempts == 0
    again = store.claim_batch(4, lease_seconds=60)
    assert [c.run_id for c in again] == ids[1:] and all(c.first for c in again)


# ----------------------------------------------------------------- the wake marker race


def _jobs(app) -> int:
    return run_queue(app).count


def test_a_run_committed_while_a_drain_job_is_pending_enqueues_nothing_and_runs(
    client, make_user, sink, run_worker, app
):
    ctx = live_flow(client, make_user, sink)
    first = post_order(client, ctx)  # sets the marker and enqueues a drain job
    assert _jobs(app) == 1
    second = post_order(client, ctx, dict(ORDER, order_number=2))
    assert _jobs(app) == 1  # the marker was set: the pending job will take this run too
    run_worker()
    assert _statuses([first, second]) == ["succeeded", "succeeded"]


def test_a_run_committed_just_after_a_job_cleared_its_marker_gets_a_job(
    client, make_user, sink, run_worker, app, monkeypatch
):
    """The job cleared the marker and has not claimed yet: the new run's wake sees no
    marker and enqueues a job of its own (and the pending job may also take the run)."""
    app.config["FLOWGATE_WAKE_SLOTS"] = 1
    ctx = live_flow(client, make_user, sink)
    first = post_order(client, ctx)
    late: list[int] = []
    real_clear = queues.clear_wake

    def clear_then_commit(app_, slot):
        real_clear(app_, slot)
        if not late:
            late.append(post_order(client, ctx, dict(ORDER, order_number=3)))
            late.append(_jobs(app))

    monkeypatch.setattr(queues, "clear_wake", clear_then_commit)
    run_worker()
    assert late[1] == 1  # the late run's wake found no marker: it enqueued a job
    assert _statuses([first, late[0]]) == ["succeeded", "succeeded"]


def test_a_run_committed_after_the_last_empty_claim_gets_a_job(
    client, make_user, sink, run_worker, app, monkeypatch
):
    """The job's last claim came back empty and the job is about to return: the marker was
    cleared long ago, so the new run's wake enqueues a job, which the burst worker runs."""
    app.config["FLOWGATE_WAKE_SLOTS"] = 1
    ctx = live_flow(client, make_user, sink)
    first = post_order(client, ctx)
    late: list[int] = []
    real_claim = SqlRunStore.claim_batch

    def claim_then_commit(self, limit, lease_seconds, **kwargs):
        batch = real_claim(self, limit, lease_seconds, **kwargs)
        if not batch and not late:
            late.append(post_order(client, ctx, dict(ORDER, order_number=4)))
        return batch

    monkeypatch.setattr(SqlRunStore, "claim_batch", claim_then_commit)
    run_worker()
    assert late and _statuses([first, late[0]]) == ["succeeded", "succeeded"]


def test_a_marker_whose_job_was_lost_is_covered_by_the_sweep(
    client, make_user, sink, run_worker, app
):
    """A wake that died between SET NX and the enqueue leaves a marker with no job: later
    wakes are held back, and the sweep forces a drain job past the marker."""
    app.config["FLOWGATE_WAKE_SLOTS"] = 1
    ctx = live_flow(client, make_user, sink)
    from app.redis_conn import get_redis

    redis = get_redis(app)
    redis.delete(run_queue(app).key)  # no job
    redis.set(queues._wake_key(run_queue(app).name, 0), 1, ex=60)  # but a marker
    run_id = post_order(client, ctx)
    assert _jobs(app) == 0  # held back by the orphaned marker
    app.config["FLOWGATE_REQUEUE_AFTER_SECONDS"] = 0
    db.session.execute(
        update(Run).where(Run.id == run_id).values(enqueued_at=utcnow() - timedelta(seconds=5))
    )
    db.session.commit()
    assert sweep(app)["stale_queued"] == 1
    assert sweep(app)["stale_queued"] == 0  # a job is waiting now: not forced twice
    run_worker()
    assert run_row(run_id).status == "succeeded" and len(sink.requests) == 1
    # The forced job cleared every marker: the next run gets its own job again.
    post_order(client, ctx, dict(ORDER, order_number=5))
    assert _jobs(app) == 1


def test_wake_enqueues_once_per_slot_until_the_job_starts(app):
    app.config["FLOWGATE_WAKE_SLOTS"] = 2
    assert wake(app, 0) is True
    assert wake(app, 0) is False and wake(app, 2) is False  # slot 0 again
    assert wake(app, 1) is True
    assert _jobs(app) == 2
    queues.clear_wake(app, 0)
    assert wake(app, 0) is True


def test_a_job_past_its_budget_claims_no_new_batch_and_wakes_a_successor(
    client, make_user, sink, app
):
    from app.worker import build_runner

    ctx = live_flow(client, make_user, sink)
    ids = _post(client, ctx, 4)
    now = [0.0]
    woken: list[bool] = []

    def more_work() -> None:
        woken.append(True)
        now[0] = 50.0  # the first batch came back full and took long: past the budget

    executed = drain(
        store=SqlRunStore(),
        runner=build_runner(app),
        lease_seconds=60,
        limits=DrainLimits(batch=2, budget_seconds=10, release_after_seconds=100),
        more_work=more_work,
        clock=lambda: now[0],
    )
    db.session.remove()
    assert executed == 2  # the batch in hand was finished, not given back
    assert _statuses(ids) == ["succeeded", "succeeded", "queued", "queued"]
    assert len(woken) == 2  # full batch, then budget spent with work left
    assert {run_row(i).attempts for i in ids[2:]} == {0}


# ----------------------------------------------------------------- a stop request (SIGTERM)


def test_a_stop_request_finishes_the_run_in_flight_and_claims_no_new_batch(
    client, make_user, sink, app
):
    from app.worker import build_runner

    ctx = live_flow(client, make_user, sink)
    ids = _post(client, ctx, 7)
    store, runner = SqlRunStore(), build_runner(app)
    woken: list[bool] = []
    # Asked to stop while the second run of the first batch (of 3) is being delivered.
    executed = drain(
        store=store,
        runner=runner,
        lease_seconds=60,
        limits=DrainLimits(batch=3),
        more_work=lambda: woken.append(True),
        should_stop=lambda: len(sink.requests) >= 2,
    )
    db.session.remove()
    assert executed == 2 and len(sink.requests) == 2
    assert _statuses(ids) == ["succeeded"] * 2 + ["queued"] * 5
    # The batch's third run went back untouched (claim taken back); runs 4-7 never claimed.
    assert all(run_row(i).lease_until is None and run_row(i).attempts == 0 for i in ids[2:])
    assert woken == [True, True]  # the full batch, then the stop: a successor must come

    # Another drain (another worker) takes every run left, each on its first attempt.
    assert drain(store=SqlRunStore(), runner=runner, lease_seconds=60) == 5
    db.session.remove()
    assert _statuses(ids) == ["succeeded"] * 7
    keys = [r.headers["Idempotency-Key"] for r in sink.requests]
    assert len(keys) == 7 == len(set(keys))
    assert {run_row(i).attempts for i in ids} == {1}


def test_a_drain_asked_to_stop_before_its_first_claim_claims_nothing_and_wakes_a_successor(
    client, make_user, sink, app
):
    from app.worker import build_runner

    ctx = live_flow(client, make_user, sink)
    ids = _post(client, ctx, 2)
    woken: list[bool] = []
    executed = drain(
        store=SqlRunStore(),
        runner=build_runner(app),
        lease_seconds=60,
        more_work=lambda: woken.append(True),
        should_stop=lambda: True,
        poll=True,
    )
    assert executed == 0 and woken == [True] and not sink.requests
    assert _statuses(ids) == ["queued", "queued"]
    assert {run_row(i).attempts for i in ids} == {0}


def test_a_failing_give_back_keeps_what_the_batch_finished(
    client, make_user, sink, app, monkeypatch
):
    from app.worker import build_runner

    ctx = live_flow(client, make_user, sink)
    ids = _post(client, ctx, 3)

    def broken(self, claimed):
        raise RuntimeError("database gone")

    monkeypatch.setattr(SqlRunStore, "release", broken)
    executed = drain(
        store=SqlRunStore(),
        runner=build_runner(app),
        lease_seconds=60,
        limits=DrainLimits(batch=3),
        should_stop=lambda: len(sink.requests) >= 1,
    )
    db.session.remove()
    assert executed == 1
    # The finished run's deferred final write was committed before the give-back; the
    # others keep their lease (the sweep re-queues them when it expires, as after a kill).
    assert _statuses(ids) == ["succeeded", "running", "running"]
    assert run_row(ids[1]).lease_until is not None
