"""The worker path: retries with the same key, dead letters with reasons, recovery sweeps."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.extensions import db
from app.models import Delivery, Run
from app.models._types import utcnow
from app.services.sweep import sweep
from tests.app.test_walking_skeleton import ORDER, definition, live_flow
from tests.support.contracts import complete_contract
from tests.support.sink import Answer


def post_order(client, ctx, payload=ORDER) -> int:
    response = client.post(f"/hooks/{ctx['flow']['slug']}", json=payload)
    assert response.status_code == 202
    return response.get_json()["run_id"]


def run_row(run_id: int) -> Run:
    db.session.expire_all()
    return db.session.get(Run, run_id)


def make_due(run_id: int) -> None:
    db.session.execute(
        update(Run).where(Run.id == run_id).values(next_attempt_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()


def test_transient_failure_is_retried_with_the_same_idempotency_key(
    client, make_user, sink, run_worker, app
):
    ctx = live_flow(client, make_user, sink)
    sink.scripted = [Answer(status=503, headers={"Retry-After": "0"}), Answer(status=201)]
    run_id = post_order(client, ctx)
    run_worker()
    run = run_row(run_id)
    assert run.status == "retrying" and run.next_attempt_at is not None
    assert "503" in (run.deliveries[0].last_error or "") or run.deliveries[0].response_code == 503
    make_due(run_id)
    assert sweep(app)["due_retries"] == 1
    run_worker()
    run = run_row(run_id)
    assert run.status == "succeeded" and run.attempts == 2
    keys = [r.headers["Idempotency-Key"] for r in sink.requests]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert run.deliveries[0].attempts == 2 and run.deliveries[0].status == "acknowledged"


def test_permanent_4xx_dead_letters_at_once_with_reason(client, make_user, sink, run_worker):
    ctx = live_flow(client, make_user, sink)
    sink.default = Answer(status=400, body=b'{"error": "unknown sku"}')
    run_id = post_order(client, ctx)
    run_worker()
    run = run_row(run_id)
    assert run.status == "dead_lettered"
    assert "send_oms" in run.reason and "permanent" in run.reason
    delivery = run.deliveries[0]
    assert delivery.status == "dead_lettered" and delivery.response_code == 400
    assert "unknown sku" in delivery.response_excerpt
    assert len(sink.requests) == 1


def test_exhausted_retries_dead_letter(client, make_user, sink, run_worker, app):
    ctx = live_flow(client, make_user, sink)  # the definition allows 3 attempts
    sink.default = Answer(status=500)
    run_id = post_order(client, ctx)
    for _ in range(3):
        run_worker()
        if run_row(run_id).status == "retrying":
            make_due(run_id)
            sweep(app)
    run = run_row(run_id)
    assert run.status == "dead_lettered" and "gave up after 3 attempts" in run.reason
    assert len(sink.requests) == 3


def test_filtered_order_sends_nothing(client, make_user, sink, run_worker):
    ctx = live_flow(client, make_user, sink)
    run_id = post_order(client, ctx, dict(ORDER, financial_status="pending"))
    run_worker()
    run = run_row(run_id)
    assert run.status == "filtered" and sink.requests == []
    assert [(s.step_id, s.status) for s in run.steps] == [("only_paid", "filtered")]


def test_worker_killed_mid_delivery_is_recovered_and_resent_with_same_key(
    client, make_user, sink, run_worker, app
):
    ctx = live_flow(client, make_user, sink)
    run_id = post_order(client, ctx)
    # What a kill -9 leaves behind: the run claimed with a lease, a delivery "sending".
    db.session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(status="running", attempts=1, lease_until=utcnow() - timedelta(seconds=1))
    )
    db.session.add(
        Delivery(
            run_id=run_id,
            step_id="send_oms",
            status="sending",
            attempts=1,
            idempotency_key="will-be-the-same",
        )
    )
    db.session.commit()
    from app.redis_conn import get_redis

    get_redis(app).flushdb()  # and the RQ job is gone with the worker
    assert sweep(app)["expired_leases"] == 1
    run_worker()
    run = run_row(run_id)
    assert run.status == "succeeded" and run.attempts == 2
    assert len(sink.requests) == 1


def test_acknowledged_delivery_is_not_sent_again(client, make_user, sink, run_worker, app):
    ctx = live_flow(client, make_user, sink)
    run_id = post_order(client, ctx)
    run_worker()
    assert len(sink.requests) == 1
    db.session.execute(update(Run).where(Run.id == run_id).values(status="queued"))
    db.session.commit()
    from app.queues import enqueue_runs

    enqueue_runs(app, [run_id])
    run_worker()
    run = run_row(run_id)
    assert run.status == "succeeded" and len(sink.requests) == 1
    assert run.steps[-1].status == "skipped"


def test_queued_run_without_a_job_is_enqueued_by_the_sweep(
    client, make_user, sink, run_worker, app
):
    ctx = live_flow(client, make_user, sink)
    run_id = post_order(client, ctx)
    from app.redis_conn import get_redis

    get_redis(app).flushdb()  # crash between commit and enqueue
    app.config["FLOWGATE_REQUEUE_AFTER_SECONDS"] = 0
    db.session.execute(
        update(Run).where(Run.id == run_id).values(enqueued_at=utcnow() - timedelta(seconds=5))
    )
    db.session.commit()
    assert sweep(app)["stale_queued"] == 1
    assert sweep(app)["stale_queued"] == 0  # its job is alive now: not enqueued twice
    run_worker()
    assert run_row(run_id).status == "succeeded" and len(sink.requests) == 1


def test_duplicate_jobs_for_one_run_deliver_once(client, make_user, sink, run_worker, app):
    ctx = live_flow(client, make_user, sink)
    run_id = post_order(client, ctx)
    from app.queues import run_queue

    queue = run_queue(app)
    queue.enqueue("flows.jobs.execute_run", run_id, job_id="dup-job")
    run_worker()
    assert run_row(run_id).status == "succeeded" and len(sink.requests) == 1


def test_fan_out_delivers_to_each_destination_with_its_own_key(client, make_user, sink, run_worker):
    ctx = live_flow(client, make_user, sink)
    analyst_h = ctx["headers"]
    connection_id = client.get("/api/v1/connections", headers=analyst_h).get_json()["items"][0][
        "id"
    ]
    doc = definition(connection_id)
    doc["steps"].append(
        {
            "id": "send_archive",
            "type": "deliver",
            "connector": "http",
            "connection_id": connection_id,
            "config": {"path": "/archive"},
        }
    )
    doc["edges"].append({"from": "to_oms_order", "to": "send_archive"})
    flow_id = ctx["flow"]["id"]
    number = client.put(
        f"/api/v1/flows/{flow_id}/draft", json={"definition": doc}, headers=analyst_h
    ).get_json()["version"]
    base = f"/api/v1/flows/{flow_id}/versions/{number}"
    client.post(f"{base}/submit", json={"contract": complete_contract()}, headers=analyst_h)
    assert client.post(f"{base}/approve", json={}, headers=ctx["owner_headers"]).status_code == 200
    run_id = post_order(client, ctx)
    run_worker()
    assert run_row(run_id).status == "succeeded"
    assert sorted(r.path for r in sink.requests) == ["/archive", "/orders"]
    assert len(set(sink.effects())) == 2


def test_mapping_error_at_run_time_dead_letters_with_the_code(client, make_user, sink, run_worker):
    ctx = live_flow(client, make_user, sink)
    analyst_h = ctx["headers"]
    connection_id = client.get("/api/v1/connections", headers=analyst_h).get_json()["items"][0][
        "id"
    ]
    doc = definition(connection_id)
    doc["steps"][1]["expression"] = "{'total': $number(note)}"
    flow_id = ctx["flow"]["id"]
    number = client.put(
        f"/api/v1/flows/{flow_id}/draft", json={"definition": doc}, headers=analyst_h
    ).get_json()["version"]
    base = f"/api/v1/flows/{flow_id}/versions/{number}"
    client.post(f"{base}/submit", json={"contract": complete_contract()}, headers=analyst_h)
    client.post(f"{base}/approve", json={}, headers=ctx["owner_headers"])
    run_id = post_order(client, ctx, dict(ORDER, note="not a number"))
    run_worker()
    run = run_row(run_id)
    assert run.status == "dead_lettered" and "to_oms_order" in run.reason
    failed = [s for s in run.steps if s.status == "failed"][0]
    assert failed.step_id == "to_oms_order" and failed.error["code"]
    assert sink.requests == []
    assert db.session.execute(select(Delivery)).first() is None


def _lose_lease(run_id: int) -> None:
    """What a worker killed (or hung) while holding the run leaves behind."""
    db.session.execute(
        update(Run).where(Run.id == run_id).values(lease_until=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()


def test_run_that_keeps_killing_its_worker_is_dead_lettered(client, make_user, sink, app):
    """Each lost lease counts once, whether the sweep re-queues the run or a worker's claim
    takes the expired lease over; the one that reaches the budget dead-letters the run."""
    from app.stores import SqlRunStore

    ctx = live_flow(client, make_user, sink)
    run_id = post_order(client, ctx)
    app.config["FLOWGATE_MAX_RUN_ATTEMPTS"] = 3
    store = SqlRunStore()
    assert store.claim(run_id, 60) is not None  # worker 1 claims it, then is killed
    _lose_lease(run_id)
    assert sweep(app)["gave_up"] == 0
    run = run_row(run_id)
    assert (run.status, run.crash_count, run.attempts) == ("queued", 1, 1)
    assert store.claim(run_id, 60) is not None  # worker 2 claims it, then is killed
    _lose_lease(run_id)
    assert store.claim(run_id, 60) is not None  # worker 3 takes the expired lease over
    run = run_row(run_id)
    assert (run.status, run.crash_count, run.attempts) == ("running", 2, 3)
    _lose_lease(run_id)  # ... and is killed too: the third lost lease
    assert sweep(app)["gave_up"] == 1
    run = run_row(run_id)
    assert run.status == "dead_lettered" and "3 times" in run.reason
    assert run.crash_count == 3 and run.lease_until is None


def test_waiting_on_an_open_breaker_does_not_use_up_the_crash_budget(
    client, make_user, sink, run_worker, app
):
    """A run re-claimed 30 times while its destination's breaker is open has harmed no
    worker: a later lost lease is its first, so the sweep re-queues it (issue #5: after a
    long outage one crash could dead-letter a run that never crashed a worker)."""
    app.config["FLOWGATE_MAX_RUN_ATTEMPTS"] = 3
    app.config["FLOWGATE_BREAKER_THRESHOLD"] = 1
    app.config["FLOWGATE_BREAKER_COOLDOWN_SECONDS"] = 3600
    app.extensions.pop("flowgate.gate", None)
    from app.worker import configure_engine

    configure_engine(app)  # rebuild the worker's gate with these settings
    ctx = live_flow(client, make_user, sink)
    sink.default = Answer(status=503)
    post_order(client, ctx, dict(ORDER, order_number=1))
    run_worker()  # its failure opens the breaker
    waiting = post_order(client, ctx, dict(ORDER, order_number=2))
    run_worker()
    requests_before = len(sink.requests)
    for _ in range(30):
        make_due(waiting)
        counts = sweep(app)
        assert counts["due_retries"] >= 1 and counts["gave_up"] == 0
        run_worker()
        run = run_row(waiting)
        assert run.status == "retrying" and "breaker" in run.reason
    assert len(sink.requests) == requests_before  # the breaker held: nothing was sent
    run = run_row(waiting)
    assert run.attempts == 31 and run.crash_count == 0 and not run.deliveries
    # Now its worker is killed while it holds the run: one lost lease, far from the budget.
    db.session.execute(
        update(Run)
        .where(Run.id == waiting)
        .values(status="running", lease_until=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    counts = sweep(app)
    assert counts["gave_up"] == 0 and counts["expired_leases"] == 1
    run = run_row(waiting)
    assert run.status == "queued" and run.crash_count == 1


def test_connector_crash_costs_an_attempt_not_the_run(
    client, make_user, sink, run_worker, monkeypatch
):
    from connectors import http

    ctx = live_flow(client, make_user, sink)

    def explode(*args, **kwargs):
        raise KeyError("bug")

    monkeypatch.setattr(http.HttpDestination, "send", explode)
    run_id = post_order(client, ctx)
    run_worker()
    run = run_row(run_id)
    assert run.status == "retrying"
    assert "unexpected KeyError" in run.deliveries[0].last_error


def test_breaker_opens_on_a_failing_destination_and_nothing_is_burned(
    client, make_user, sink, run_worker, app
):
    """Sink down: after the threshold the breaker opens, later runs wait without attempts,
    and once the sink is back and the cool-down passed, everything is delivered once."""
    import time

    from app.runtime import delivery_gate

    app.config["FLOWGATE_BREAKER_THRESHOLD"] = 2
    app.config["FLOWGATE_BREAKER_COOLDOWN_SECONDS"] = 1
    app.extensions.pop("flowgate.gate", None)
    from app.worker import configure_engine

    configure_engine(app)  # rebuild the worker's gate with these settings
    ctx = live_flow(client, make_user, sink)
    sink.default = Answer(status=503)
    run_ids = [post_order(client, ctx, dict(ORDER, order_number=n)) for n in range(4)]
    run_worker()
    connection_id = client.get("/api/v1/connections", headers=ctx["headers"]).get_json()["items"][0]
    # Open, or already half-open if the 1 s cool-down passed on a loaded machine: either way
    # it opened (half-open only ever follows open).
    assert connection_id["breaker"]["state"] in ("open", "half_open")
    assert len(sink.requests) == 2  # the threshold; the other two runs waited
    waiting = [run_row(rid) for rid in run_ids[2:]]
    assert all(r.status == "retrying" and "breaker" in r.reason for r in waiting)
    assert all(not r.deliveries for r in waiting)  # no attempt burned
    sink.default = Answer(status=201)
    time.sleep(1.1)
    for _ in range(15):
        for rid in run_ids:
            if run_row(rid).status == "retrying":
                make_due(rid)
        sweep(app)
        run_worker()
        if all(run_row(rid).status == "succeeded" for rid in run_ids):
            break
        time.sleep(0.3)
    assert [run_row(rid).status for rid in run_ids] == ["succeeded"] * 4
    assert len(set(sink.effects())) == 4
    assert delivery_gate(app).state(connection_id["id"]).state == "closed"


def _breaker(client, ctx, connection_id: int) -> dict:
    r = client.get(f"/api/v1/connections/{connection_id}", headers=ctx["headers"])
    db.session.rollback()  # end the request's transaction before the worker runs (SQLite)
    assert r.status_code == 200, r.get_json()
    return r.get_json()["breaker"]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_4xx_answers_do_not_trip_the_breaker_but_as_many_5xx_do(
    client, make_user, sink, run_worker, app, status
):
    """Reliability case 10: a destination refusing a message is up and answering, so its
    refusals (dead-lettered at once) do not count towards the breaker; 503s do."""
    app.config["FLOWGATE_BREAKER_THRESHOLD"] = 2
    app.config["FLOWGATE_BREAKER_COOLDOWN_SECONDS"] = 3600
    app.extensions.pop("flowgate.gate", None)
    from app.worker import configure_engine

    configure_engine(app)  # rebuild the worker's gate with these settings
    ctx = live_flow(client, make_user, sink)
    connection_id = client.get("/api/v1/connections", headers=ctx["headers"]).get_json()["items"][
        0
    ]["id"]
    sink.default = Answer(status=status, body=b'{"error": "refused"}')
    refused = [post_order(client, ctx, dict(ORDER, order_number=n)) for n in (1, 2, 3)]
    run_worker()
    assert len(sink.requests) == 3  # more refusals than the threshold, none held back
    assert [run_row(rid).status for rid in refused] == ["dead_lettered"] * 3
    breaker = _breaker(client, ctx, connection_id)
    assert breaker["state"] == "closed" and breaker["consecutive_failures"] == 0

    sink.default = Answer(status=503)
    failing = [post_order(client, ctx, dict(ORDER, order_number=n)) for n in (4, 5, 6)]
    run_worker()
    assert _breaker(client, ctx, connection_id)["state"] == "open"
    assert len(sink.requests) == 3 + 2  # the threshold; the third run waits on the breaker
    waiting = run_row(failing[2])
    assert waiting.status == "retrying" and "breaker" in waiting.reason
