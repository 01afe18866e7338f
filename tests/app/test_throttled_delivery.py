"""Reliability case 11 through the worker: a destination answering 429 with a Retry-After is
waited for, not dead-lettered; the throttled attempts show in the run's history but do not
use up the retry policy's attempts, nor count as circuit-breaker failures."""

from __future__ import annotations

from datetime import timedelta

from app.models._types import utcnow
from app.services.sweep import sweep
from tests.app.test_execution import make_due, post_order, run_row
from tests.app.test_walking_skeleton import live_flow
from tests.support.sink import Answer


def test_five_429s_then_201_delivers_once_within_three_attempts(
    client, make_user, sink, run_worker, app
):
    ctx = live_flow(client, make_user, sink)  # the definition allows 3 attempts
    throttle = Answer(status=429, body=b'{"error": "slow down"}', headers={"Retry-After": "1"})
    sink.scripted = [throttle] * 5 + [Answer(status=201)]
    run_id = post_order(client, ctx)
    for claim in range(1, 6):
        before = utcnow()
        run_worker()
        run = run_row(run_id)
        assert run.status == "retrying", run.reason
        assert "throttled" in run.reason
        assert run.next_attempt_at >= before + timedelta(seconds=1)  # not before Retry-After
        (delivery,) = run.deliveries
        assert delivery.status == "retrying" and delivery.response_code == 429
        assert "slow down" in delivery.response_excerpt
        assert delivery.attempts == 0  # recorded, then given back: the budget is whole
        (step,) = [s for s in run.steps if s.step_id == "send_oms"]
        assert step.status == "retrying" and step.attempt == claim
        assert step.error["code"] == "throttled" and step.error["status_code"] == 429
        make_due(run_id)
        assert sweep(app)["due_retries"] == 1
    run_worker()
    run = run_row(run_id)
    assert run.status == "succeeded" and run.reason is None
    assert len(sink.requests) == 6 and list(sink.effects().values()) == [6]  # 1 key, 1 effect
    (delivery,) = run.deliveries
    assert delivery.status == "acknowledged" and delivery.response_code == 201
    # The history: six attempts (claims), the last one recorded as the sixth.
    shown = client.get(f"/api/v1/runs/{run_id}", headers=ctx["headers"]).get_json()
    assert shown["status"] == "succeeded" and shown["attempts"] == 6
    assert {s["step_id"]: s["attempt"] for s in shown["steps"]}["send_oms"] == 6
    # Five 429s reached the default threshold of 5 had they been failures: none counted.
    (connection,) = client.get("/api/v1/connections", headers=ctx["headers"]).get_json()["items"]
    assert connection["breaker"]["state"] == "closed"
    assert connection["breaker"]["consecutive_failures"] == 0


def test_429_asking_past_the_max_age_dead_letters_at_once(client, make_user, sink, run_worker):
    ctx = live_flow(client, make_user, sink)  # max age: the default, 24 h
    sink.default = Answer(status=429, headers={"Retry-After": str(2 * 86400)})
    run_id = post_order(client, ctx)
    run_worker()
    run = run_row(run_id)
    assert run.status == "dead_lettered"
    assert "destination kept throttling (HTTP 429) past the max age of 86400 s" in run.reason
    (delivery,) = run.deliveries
    assert delivery.status == "dead_lettered" and delivery.response_code == 429
    assert delivery.attempts == 1 and len(sink.requests) == 1
