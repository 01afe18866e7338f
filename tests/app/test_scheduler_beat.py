"""One scheduler beat runs every chore in order, and a failing chore does not stop the rest
(a broken alert rule must not stop the recovery sweep, the outbox or retention)."""

from __future__ import annotations

import logging

from app import scheduler


def test_a_failing_chore_is_logged_and_the_others_still_run(app, monkeypatch, caplog):
    ran: list[str] = []

    def record(name):
        return lambda *_args, **_kwargs: ran.append(name)

    def broken(*_args, **_kwargs):
        raise RuntimeError("alert rule blew up")

    monkeypatch.setattr(scheduler, "fire_due_schedules", record("schedules"))
    monkeypatch.setattr(scheduler, "fire_due_polls", record("polls"))
    monkeypatch.setattr(scheduler, "_sweep", record("sweep"))
    monkeypatch.setattr(scheduler.alerts, "tick", broken)
    monkeypatch.setattr(scheduler.outbox, "tick", record("outbox"))
    monkeypatch.setattr(scheduler.rollup, "tick", record("rollup"))
    monkeypatch.setattr(scheduler.retention, "tick", record("retention"))
    with caplog.at_level(logging.ERROR, logger="flowgate.scheduler"):
        scheduler.beat(app)
    assert ran == ["schedules", "polls", "sweep", "outbox", "rollup", "retention"]
    assert "scheduler.alerts_failed" in caplog.text


def test_the_chores_run_in_order():
    names = [name for name, _ in scheduler.chores(None, None)]  # type: ignore[arg-type]
    assert names.index("schedules") < names.index("sweep") < names.index("alerts")
    assert {"polls", "outbox", "rollup", "retention"} <= set(names)


def test_a_redis_outage_is_said_once_without_tracebacks_and_its_end_is_said(
    app, monkeypatch, caplog
):
    monkeypatch.setattr(scheduler, "_redis_outage", scheduler._OutageLog(every=30))
    working_url = app.config["FLOWGATE_REDIS_URL"]
    app.config["FLOWGATE_REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there
    app.extensions.pop("flowgate.redis", None)
    with caplog.at_level(logging.INFO, logger="flowgate.scheduler"):
        for _ in range(3):
            scheduler.beat(app)
        down = [r for r in caplog.records if "redis_unavailable" in r.getMessage()]
        assert len(down) == 1 and down[0].exc_info is None  # not 3 beats × chores tracebacks
        assert not [r for r in caplog.records if r.getMessage().endswith("_failed")]

        app.config["FLOWGATE_REDIS_URL"] = working_url
        app.extensions.pop("flowgate.redis", None)
        scheduler.beat(app)
        scheduler.beat(app)
    assert len([r for r in caplog.records if "scheduler.redis_back" in r.getMessage()]) == 1
