"""Retention: old payloads and step I/O are pruned, runs, statuses and counts stay."""

from __future__ import annotations

from datetime import timedelta

from app.extensions import db
from app.models import Delivery, Run, RunStep
from app.services import retention
from tests.app.test_execution import post_order
from tests.app.test_walking_skeleton import ORDER, live_flow
from tests.support.sink import Answer


def backdate(run_id: int, days: float) -> None:
    run = db.session.get(Run, run_id)
    run.received_at -= timedelta(days=days)
    db.session.commit()


def fresh(run_id: int) -> Run:
    db.session.expire_all()
    return db.session.get(Run, run_id)


def seeded(client, make_user, sink, run_worker):
    ctx = live_flow(client, make_user, sink)
    old = [post_order(client, ctx, dict(ORDER, order_number=n)) for n in (101, 102, 103)]
    recent = post_order(client, ctx, dict(ORDER, order_number=104))
    run_worker()
    sink.default = Answer(status=400)
    dead = post_order(client, ctx, dict(ORDER, order_number=105))
    run_worker()
    for run_id in (*old, dead):
        backdate(run_id, 45)
    backdate(recent, 10)
    return ctx, old, recent, dead


def test_prune_keeps_runs_and_counts_but_drops_payloads_and_step_io(
    client, make_user, sink, run_worker
):
    ctx, old, recent, dead = seeded(client, make_user, sink, run_worker)
    h = ctx["headers"]
    before = client.get(f"/api/v1/flows/{ctx['flow']['id']}/health", headers=h).get_json()

    report = retention.prune(30, batch=2)  # two batches: one transaction each
    assert (report.runs, report.steps) == (3, 9)
    for run_id in old:
        run = fresh(run_id)
        assert run.status == "succeeded" and run.pruned_at is not None
        assert run.payload == retention.PRUNED
        assert run.business_key == str(100 + old.index(run_id) + 1)
        steps = db.session.query(RunStep).filter_by(run_id=run_id).all()
        assert len(steps) == 3
        assert all(s.input is None and s.output is None for s in steps)
        assert all(s.status for s in steps)
        assert db.session.query(Delivery).filter_by(run_id=run_id).one().response_excerpt == ""
    assert fresh(recent).pruned_at is None and fresh(recent).payload["order_number"] == 104
    # A dead letter keeps its payload: replaying it needs the message.
    assert fresh(dead).pruned_at is None and fresh(dead).payload["order_number"] == 105

    after = client.get(f"/api/v1/flows/{ctx['flow']['id']}/health", headers=h).get_json()
    assert after["dead_letters"] == before["dead_letters"] == 1
    assert sum(after["sparklines"]["7d"]["runs"]) == sum(before["sparklines"]["7d"]["runs"])
    r = client.get(f"/api/v1/runs?flow={ctx['flow']['id']}", headers=h).get_json()
    assert r["total"] == 5
    # Pruned runs are still found by business key and by a SKU of their (gone) payload.
    assert client.get("/api/v1/runs?q=101", headers=h).get_json()["items"][0]["id"] == old[0]
    sku = ORDER["line_items"][0]["sku"]
    assert client.get(f"/api/v1/runs?q={sku}", headers=h).get_json()["total"] == 5
    detail = client.get(f"/api/v1/runs/{old[0]}", headers=h).get_json()
    assert detail["payload"] == retention.PRUNED and detail["status"] == "succeeded"

    assert retention.prune(30).runs == 0  # nothing left to prune
    assert retention.prune(5).runs == 1  # the 10-day-old run


def test_the_scheduled_tick_runs_once_an_hour(client, make_user, sink, run_worker, app):
    _, old, _, _ = seeded(client, make_user, sink, run_worker)
    app.config["FLOWGATE_RETENTION_DAYS"] = 30
    first = retention.tick(app)
    assert first is not None and first.runs == 3
    assert retention.tick(app) is None  # the hourly key is set: no second pass
    app.config["FLOWGATE_RETENTION_DAYS"] = 0
    from app.redis_conn import get_redis

    get_redis(app).delete(retention._lock_key(app))
    assert retention.tick(app) is None  # 0 keeps everything


def test_cli_command(client, make_user, sink, run_worker, app):
    _, old, _, _ = seeded(client, make_user, sink, run_worker)
    result = app.test_cli_runner().invoke(args=["retention", "run", "--days", "30"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("pruned 3 runs and 9 steps received before")
    assert fresh(old[0]).payload == retention.PRUNED
    result = app.test_cli_runner().invoke(args=["retention", "run", "--days", "0"])
    assert result.exit_code != 0
