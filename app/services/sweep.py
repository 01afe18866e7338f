"""Recovery sweep, run by the scheduler every few seconds: nothing accepted is stranded.

- a ``running`` run whose lease expired (its worker was killed) goes back to ``queued``;
- a ``retrying`` run whose ``next_attempt_at`` has come goes back to ``queued``;
- ``queued`` runs older than FLOWGATE_REQUEUE_AFTER_SECONDS while no drain job is waiting
  in the queue (crash between commit and wake, Redis flushed, a lost wake marker) get a
  drain job, forced past the wake markers (app.queues);
- a run that has stopped its worker FLOWGATE_MAX_RUN_ATTEMPTS times is dead-lettered.

The crash budget is ``Run.crash_count``, the leases lost (counted here when an expired lease
is re-queued, and by a claim that takes one over), not ``Run.attempts``: that counts claims,
and a run waiting on an open circuit breaker is re-claimed at every cool-down without ever
harming a worker.
Enqueueing a run twice is harmless: the SQL claim lets only one worker execute it.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask
from sqlalchemy import and_, or_, select, update

from app.extensions import db
from app.models import Run
from app.models._types import utcnow
from app.queues import enqueue_runs, run_queue, wake
from flows.results import RunStatus

log = logging.getLogger("flowgate.sweep")
BATCH = 500


def _requeue(where: object, **values: object) -> list[int]:
    ids = list(db.session.execute(select(Run.id).where(where).limit(BATCH)).scalars())
    if ids:
        db.session.execute(
            update(Run)
            .where(Run.id.in_(ids), where)
            .values(status=RunStatus.QUEUED.value, lease_until=None, enqueued_at=utcnow(), **values)
        )
    return ids


def _give_up_on_crashing_runs(now: object, max_attempts: int) -> int:
    """A run that kills or hangs its worker every time must end, visibly, not loop forever.

    The expired lease at hand is one more lost lease: give up when it is the last of the
    budget (claims spent waiting on an open breaker do not count, see the module docstring).
    """
    result = db.session.execute(
        update(Run)
        .where(
            Run.status == RunStatus.RUNNING.value,
            Run.lease_until < now,
            Run.crash_count + 1 >= max_attempts,
        )
        .values(
            crash_count=Run.crash_count + 1,
            status=RunStatus.DEAD_LETTERED.value,
            lease_until=None,
            finished_at=now,
            reason=f"the run stopped its worker {max_attempts} times (crash or timeout)",
        )
    )
    return result.rowcount or 0


def sweep(app: Flask) -> dict[str, int]:
    now = utcnow()
    crashed = _give_up_on_crashing_runs(now, app.config["FLOWGATE_MAX_RUN_ATTEMPTS"])
    expired = _requeue(
        and_(Run.status == RunStatus.RUNNING.value, Run.lease_until < now),
        crash_count=Run.crash_count + 1,
    )
    due = _requeue(and_(Run.status == RunStatus.RETRYING.value, Run.next_attempt_at <= now))
    stale_before = now - timedelta(seconds=app.config["FLOWGATE_REQUEUE_AFTER_SECONDS"])
    stale_candidates = list(
        db.session.execute(
            select(Run.id)
            .where(
                Run.status == RunStatus.QUEUED.value,
                or_(Run.enqueued_at.is_(None), Run.enqueued_at < stale_before),
            )
            .limit(BATCH)
        ).scalars()
    )
    # A pending drain job claims every queued run when it starts (app.queues), so stale
    # runs are only stranded when no job is waiting: then one is forced, past any marker.
    stale = stale_candidates if stale_candidates and run_queue(app).count == 0 else []
    if stale:
        db.session.execute(update(Run).where(Run.id.in_(stale)).values(enqueued_at=now))
    db.session.commit()
    enqueue_runs(app, [*expired, *due])
    if stale:
        wake(app, force=True)
    counts = {
        "expired_leases": len(expired),
        "due_retries": len(due),
        "stale_queued": len(stale),
        "gave_up": crashed,
    }
    if any(counts.values()):
        log.info("sweep.requeued %s", " ".join(f"{k}={v}" for k, v in counts.items()))
    return counts
