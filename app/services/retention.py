"""Retention: prune what runs carried (payload, step input/output, delivery response
excerpts) after FLOWGATE_RETENTION_DAYS, and keep the runs themselves.

Pruning keeps each ``Run`` row with its flow, status, timings, attempts, business key and
search keys (``run_keys``), so counts, dashboards, /metrics and business-key search still
see every message; only the data itself goes. The payload (NOT NULL) becomes the marker
``{"_flowgate": "pruned"}`` and ``runs.pruned_at`` is set; step input/output become NULL.
Sent notifications (the outbox) older than the same cutoff are deleted too; failed ones stay
until an admin retries them.

The scheduler calls ``tick`` every beat; a Redis ``SET NX EX`` key makes it run at most once
an hour across every scheduler process (the key is both the lock and the timer). Work goes
in batches of ``BATCH`` runs, one transaction each, found through the partial index
``ix_runs_unpruned_received``, so a first run over a large backlog neither holds one huge
transaction nor rescans already pruned history later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import select, update

from app import runtime
from app.extensions import db
from app.models import Delivery, Run, RunStep
from app.models._types import utcnow
from app.redis_conn import get_redis
from app.services import outbox
from flows.results import RunStatus

log = logging.getLogger("flowgate.retention")

PRUNED = {"_flowgate": "pruned"}
BATCH = 1000
INTERVAL_SECONDS = 3600
# Dead letters keep their payload until someone handles them: a replay needs it. A replayed
# run that then succeeds is pruned on the next pass.
PRUNABLE = (RunStatus.SUCCEEDED.value, RunStatus.FILTERED.value, RunStatus.REJECTED.value)


@dataclass(frozen=True)
class RetentionReport:
    cutoff: datetime
    runs: int
    steps: int
    notifications: int = 0  # sent outbox messages deleted (failed ones wait for a retry)

    def __str__(self) -> str:
        return (
            f"pruned {self.runs} runs and {self.steps} steps received before"
            f" {self.cutoff.isoformat(timespec='seconds')}Z"
        )


def prune(days: int, now: datetime | None = None, batch: int = BATCH) -> RetentionReport:
    """Prune finished runs received more than ``days`` days ago; commits per batch.

    Runs still in flight (queued, running, retrying) and dead letters keep their payload
    whatever their age: a retry or a replay needs it.
    """
    if days < 1:
        raise ValueError("retention needs at least one day")
    cutoff = (now or utcnow()) - timedelta(days=days)
    runs = steps = 0
    while True:
        ids = list(
            db.session.execute(
                select(Run.id)
                .where(
                    Run.pruned_at.is_(None),
                    Run.received_at < cutoff,
                    Run.status.in_(PRUNABLE),
                )
                .order_by(Run.received_at)
                .limit(batch)
            ).scalars()
        )
        if not ids:
            break
        pruned_at = utcnow()
        db.session.execute(
            update(Run).where(Run.id.in_(ids)).values(payload=PRUNED, pruned_at=pruned_at)
        )
        result = db.session.execute(
            update(RunStep)
            .where(RunStep.run_id.in_(ids))
            .values(stored_input=None, input_ref=None, output=None)
        )
        steps += result.rowcount or 0
        db.session.execute(
            update(Delivery).where(Delivery.run_id.in_(ids)).values(response_excerpt="")
        )
        db.session.commit()
        runs += len(ids)
        if len(ids) < batch:
            break
    notifications = outbox.prune(cutoff)
    db.session.commit()
    report = RetentionReport(cutoff, runs, steps, notifications)
    log.info(
        "retention.pruned runs=%s steps=%s notifications=%s cutoff=%s",
        runs,
        steps,
        notifications,
        cutoff.isoformat(),
    )
    return report


def _lock_key(app: Flask) -> str:
    return f"flowgate:{runtime.idempotency_prefix(app)}:retention:hourly"


def tick(app: Flask) -> RetentionReport | None:
    """Prune if no scheduler did in the last hour (the Redis key is lock and timer)."""
    days = app.config["FLOWGATE_RETENTION_DAYS"]
    if not days:
        return None  # 0 keeps everything
    if not get_redis(app).set(_lock_key(app), "1", nx=True, ex=INTERVAL_SECONDS):
        return None
    return prune(days)
