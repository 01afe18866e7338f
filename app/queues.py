"""RQ queues. Jobs carry ids only and use the JSON serializer (no pickle from Redis).

Runs are not enqueued one job each. A committed run only needs *some* drain job to start
after its commit: ``flows.jobs.drain_runs`` claims queued runs from SQL in batches until none
is left. ``wake`` makes sure one is coming, and enqueues one only when none is pending, so
intake pays one Redis ``SET NX`` per message, not an RQ job, and a worker pays RQ's own
bookkeeping (about 20 round trips) per drain job, not per run.

Why no committed run is stranded (the wake marker race). There are ``slots`` markers
``flowgate:wake:<queue>:<slot>``. A marker is set (``SET NX``) only by the caller that then
enqueues a drain job for that slot, and a drain job deletes its slot's marker *before* its
first claim, then claims until a claim comes back empty. Take a run R committed at t1 whose
``wake`` finds the marker already set at t2 > t1, so it enqueues nothing. The marker being
set at t2 means the job J it stands for had not yet deleted it, so J's first claim comes
after t2, hence after R's commit: R is visible to J's claims, and J only stops at an empty
claim, so R is claimed by J or by another worker before J stops. If instead R's ``wake``
finds no marker, it sets it and enqueues a job of its own. Either way a job that will see R
exists, and deleting a marker (early, or by TTL) can only cause an extra job, never a missed
run. What remains is covered by the recovery sweep as before (``app.services.sweep``): a
``wake`` that fails or dies between ``SET NX`` and the enqueue (Redis down, a kill), a
Redis flush, a run skipped by ``SKIP LOCKED`` because another transaction held its row at
the last empty claim. Running a run twice is impossible whatever happens here: the SQL claim
is a compare-and-set.

A job that emptied the queue may linger (``app.worker``, ``FLOWGATE_DRAIN_LINGER_SECONDS``):
it sets its marker again (``hold_wake``), so wakes enqueue nothing, and claims again after
every poll interval. That keeps the argument: a wake that finds the held marker comes before
the job's next claim, and the job ends by clearing the marker and then claiming until empty
once more.
"""

from __future__ import annotations

from flask import Flask
from rq import Queue
from rq.serializers import JSONSerializer

from app.redis_conn import get_redis

EXECUTE_RUN = "flows.jobs.execute_run"
DRAIN_RUNS = "flows.jobs.drain_runs"
ALL_SLOTS = -1
# A marker outlives a lost enqueue by at most this long (the sweep also covers that case);
# longer than a drain job normally waits in the queue, so it rarely causes an extra job.
WAKE_TTL_SECONDS = 60
# A drain job stops claiming after its budget (flows.execution.DrainLimits, 30 s) and then
# finishes the run in hand; this leaves room for that run's deliveries and timeouts.
DRAIN_JOB_TIMEOUT = 900


def run_queue(app: Flask) -> Queue:
    return Queue(
        app.config["FLOWGATE_QUEUE_NAME"],
        connection=get_redis(app),
        serializer=JSONSerializer,
        default_timeout=300,
    )


def job_id_for(run_id: int, queue_name: str) -> str:
    """Namespaced by queue: two installations (or test sessions) sharing a Redis database
    must not overwrite each other's job hashes."""
    return f"{queue_name}-run-{run_id}"


def wake_slots(app: Flask) -> int:
    """How many drain jobs may be pending at once (workers that can start on new work)."""
    return max(1, int(app.config.get("FLOWGATE_WAKE_SLOTS") or 4))


def _wake_key(queue_name: str, slot: int) -> str:
    return f"flowgate:wake:{queue_name}:{slot}"


def _enqueue_drain(queue: Queue, slot: int) -> None:
    queue.enqueue_many(
        [
            Queue.prepare_data(
                DRAIN_RUNS,
                args=(slot,),
                result_ttl=0,  # nothing reads a drain job's result: no result key, no registry
                failure_ttl=86400,
                timeout=DRAIN_JOB_TIMEOUT,
            )
        ]
    )


def wake(app: Flask, slot: int = 0, *, force: bool = False) -> bool:
    """Make sure a drain job will start after the caller's commit (see the module docstring).

    Returns True if this call enqueued one. ``force``: enqueue one whatever the markers say,
    for the sweep, whose job clears every marker (a marker whose enqueue was lost suppresses
    wakes until its TTL)."""
    queue = run_queue(app)
    if force:
        _enqueue_drain(queue, ALL_SLOTS)
        return True
    slot %= wake_slots(app)
    if not _take_marker(queue, slot):
        return False  # a drain job is pending for this slot and has not claimed yet
    try:
        _enqueue_drain(queue, slot)
    except Exception:
        # Do not hold back later wakes for a job that is not there.
        queue.connection.delete(_wake_key(queue.name, slot))
        raise
    return True


def hold_wake(app: Flask, slot: int) -> bool:
    """A drain job about to linger takes its slot's marker back: while it holds it, a
    ``wake`` enqueues nothing and relies on this job's next claim, which the job makes
    after every poll interval until it clears the marker (then claims until empty once
    more; see ``app.worker``). False: a marker is set, so a job for the slot is coming."""
    return _take_marker(run_queue(app), slot % wake_slots(app))


def _take_marker(queue: Queue, slot: int) -> bool:
    """``SET NX`` of the slot's marker: True if this caller now holds it."""
    return bool(queue.connection.set(_wake_key(queue.name, slot), 1, nx=True, ex=WAKE_TTL_SECONDS))


def clear_wake(app: Flask, slot: int) -> None:
    """Called by a drain job before its first claim (``ALL_SLOTS``: every marker)."""
    queue = run_queue(app)
    slots = range(wake_slots(app)) if slot == ALL_SLOTS else [slot % wake_slots(app)]
    queue.connection.delete(*(_wake_key(queue.name, s) for s in slots))


def enqueue_runs(app: Flask, run_ids: list[int]) -> None:
    """Make sure committed queued runs get executed: wake a drain job (one ``SET NX`` when
    one is already pending). Losing this call is safe: the sweep re-enqueues.

    Always slot 0: a running job has cleared its marker, so the next arrival enqueues the
    job an idle worker takes; a job whose batch came back full wakes the next slot too
    (``app.worker``), so a backlog is drained by every worker."""
    if run_ids:
        wake(app, 0)
