"""Scheduler process (``python -m app.scheduler``): the recovery sweep on a fixed beat.

Each beat (see :func:`chores`): fire due cron schedules (app.services.triggers), polls at
their intervals (app.services.polling), the sweep, alert evaluation (app.services.alerts, at
most every FLOWGATE_ALERT_INTERVAL_SECONDS) and the daily reconciliation, the notification
outbox, the dashboard roll-up and retention.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime

import redis
from flask import Flask
from rq.registry import StartedJobRegistry

from app import create_app
from app.extensions import db
from app.logging_setup import configure_logging
from app.queues import run_queue
from app.redis_conn import warn_on_unsafe_eviction_policy
from app.services import alerts, outbox, reconciliation, retention, rollup
from app.services.polling import fire_due_polls
from app.services.sweep import sweep
from app.services.triggers import fire_due_schedules, scheduler_now

log = logging.getLogger("flowgate.scheduler")


def _sweep(app: Flask) -> None:
    sweep(app)
    # RQ notices jobs of killed workers lazily; the SQL lease is our truth, this only keeps
    # RQ's own registries tidy.
    StartedJobRegistry(queue=run_queue(app)).cleanup()


def _alerts(app: Flask) -> None:
    alerts.tick(app)  # a Redis lock keeps two schedulers from both alerting
    reconciliation.daily(app)


def chores(app: Flask, now: datetime) -> list[tuple[str, Callable[[], object]]]:
    """One beat's work, in order. Schedules come first (a slow sweep must not make a tick
    late, and so skipped); alerts come after the sweep; each chore fails on its own."""
    return [
        ("schedules", lambda: fire_due_schedules(app, now)),
        # Polls at their own intervals, one scheduler per flow (claimed in SQL).
        ("polls", lambda: fire_due_polls(app, now.replace(tzinfo=None))),
        ("sweep", lambda: _sweep(app)),
        ("alerts", lambda: _alerts(app)),
        # Queued e-mails and webhooks (review decisions, manual resolves) and due retries;
        # alert evaluation already sent its own first attempts above.
        ("outbox", lambda: outbox.tick(app)),
        # Dashboard statistics: a primary-key read most beats, a roll-up once a minute.
        ("rollup", lambda: rollup.tick(app)),
        # At most once an hour across schedulers (a Redis key is lock and timer).
        ("retention", lambda: retention.tick(app)),
    ]


class _OutageLog:
    """Redis being away is one fact, not three tracebacks a second: said once when it is
    first seen, then every ``every`` seconds while it lasts, and once when it is over."""

    def __init__(self, every: float = 30.0) -> None:
        self.every = every
        self.since: float | None = None
        self.said_at = 0.0

    def failed(self, chore: str, exc: BaseException) -> None:
        now = time.monotonic()
        first = self.since is None
        if first:
            self.since = now
        if first or now - self.said_at >= self.every:
            self.said_at = now
            log.error(
                "scheduler.redis_unavailable chore=%s error=%s down_for=%.0fs",
                chore,
                exc,
                now - self.since,
            )

    def beat_ok(self) -> None:
        if self.since is not None:
            log.info("scheduler.redis_back down_for=%.0fs", time.monotonic() - self.since)
            self.since = None


_redis_outage = _OutageLog()


def beat(app: Flask) -> None:
    with app.app_context():
        redis_failed = False
        try:
            for name, chore in chores(app, scheduler_now(app)):
                try:
                    chore()
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    redis_failed = True
                    _redis_outage.failed(name, exc)
                    db.session.rollback()
                except Exception:  # keep beating: one failing chore must not stop recovery
                    log.exception("scheduler.%s_failed", name)
                    db.session.rollback()
        finally:
            db.session.remove()
        if not redis_failed:
            _redis_outage.beat_ok()


def main() -> None:
    configure_logging()  # FLOWGATE_LOG_FORMAT (json by default) and FLOWGATE_LOG_LEVEL
    app = create_app()
    warn_on_unsafe_eviction_policy(app)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    interval = app.config["FLOWGATE_SWEEP_INTERVAL_SECONDS"]
    log.info("scheduler.started interval=%ss", interval)
    while not stop.is_set():
        beat(app)
        stop.wait(min(interval, app.config["FLOWGATE_ALERT_INTERVAL_SECONDS"]))
    log.info("scheduler.stopped")


if __name__ == "__main__":
    main()
