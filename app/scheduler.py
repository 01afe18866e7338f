"""Scheduler process (``python -m app.scheduler``): the recovery sweep on a fixed beat.

Each beat: fire due cron schedules (app.services.triggers), then the sweep, then alert
evaluation (app.services.alerts, at most every FLOWGATE_ALERT_INTERVAL_SECONDS) and the daily
reconciliation. Polls (app.services.polling) run after the schedules, each at its interval.
"""

from __future__ import annotations

import logging
import signal
import threading

from rq.registry import StartedJobRegistry

from app import create_app
from app.extensions import db
from app.logging_setup import configure_logging
from app.queues import run_queue
from app.services import alerts, reconciliation, retention
from app.services.polling import fire_due_polls
from app.services.sweep import sweep
from app.services.triggers import fire_due_schedules, scheduler_now

log = logging.getLogger("flowgate.scheduler")


def main() -> None:
    configure_logging()  # FLOWGATE_LOG_FORMAT (json by default) and FLOWGATE_LOG_LEVEL
    app = create_app()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    interval = app.config["FLOWGATE_SWEEP_INTERVAL_SECONDS"]
    log.info("scheduler.started interval=%ss", interval)
    while not stop.is_set():
        with app.app_context():
            now = scheduler_now(app)
            try:  # schedules first: a slow sweep must not make a tick late (and skipped)
                fire_due_schedules(app, now)
            except Exception:  # keep beating: a schedule error must not stop recovery
                log.exception("scheduler.schedules_failed")
                db.session.rollback()
            try:  # polls at their own intervals, one scheduler per flow (claimed in SQL)
                fire_due_polls(app, now.replace(tzinfo=None))
            except Exception:
                log.exception("scheduler.polls_failed")
                db.session.rollback()
            try:
                sweep(app)
                # RQ notices jobs of killed workers lazily; the SQL lease is our truth, this
                # only keeps RQ's own registries tidy.
                StartedJobRegistry(queue=run_queue(app)).cleanup()
            except Exception:  # keep beating: one bad sweep must not stop recovery
                log.exception("scheduler.sweep_failed")
                db.session.rollback()
            try:  # alerts after the sweep; a Redis lock keeps two schedulers from both alerting
                alerts.tick(app)
                reconciliation.daily(app)
            except Exception:
                log.exception("scheduler.alerts_failed")
                db.session.rollback()
            try:  # at most once an hour across schedulers (a Redis key is lock and timer)
                retention.tick(app)
            except Exception:
                log.exception("scheduler.retention_failed")
                db.session.rollback()
            finally:
                db.session.remove()
        stop.wait(min(interval, app.config["FLOWGATE_ALERT_INTERVAL_SECONDS"]))
    log.info("scheduler.stopped")


if __name__ == "__main__":
    main()
