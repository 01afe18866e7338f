"""Replay of dead letters, the cases the main file does not cover: the preview's keys are the
ones the replay sends, the acknowledged destinations are skipped run by run in a bulk
preview, and a replayed run gets a fresh crash budget from the recovery sweep."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from app.extensions import db
from app.models import AuditEvent, Run
from app.models._types import utcnow
from app.services.sweep import sweep
from tests.app.test_dead_letters import (
    REPLAY,
    approve,
    connection_id,
    dead_letter_half_delivered,
    fan_out_flow,
    mapped,
)
from tests.app.test_execution import post_order, run_row
from tests.app.test_walking_skeleton import ORDER, definition, live_flow
from tests.support.sink import Answer


def test_preview_of_a_mapping_failure_names_the_key_the_replay_then_sends(
    client, make_user, sink, run_worker
):
    """A run dead-lettered before any delivery has no ledger row: the preview still names
    the key, and the replay (on the fixed live version) sends with exactly that key."""
    ctx = live_flow(client, make_user, sink)
    broken = definition(connection_id(client, ctx))
    broken["steps"][1]["expression"] = "$number(order_number & 'x')"  # fails at run time
    approve(client, ctx, broken)
    run_id = post_order(client, ctx, ORDER)
    run_worker()
    run = run_row(run_id)
    assert run.status == "dead_lettered" and run.deliveries == []
    assert sink.requests == []

    approve(client, ctx, definition(connection_id(client, ctx)))  # the mapping fixed
    selection = {"ids": [run_id], "version": "live"}
    preview = client.post(REPLAY, json=selection, headers=ctx["owner_headers"]).get_json()
    [planned] = preview["runs"]
    assert planned["outcome"] == "succeeded" and planned["previous_version"] == 2
    [dest] = planned["destinations"]
    assert dest["action"] == "sent" and dest["previous_status"] is None
    assert dest["message"] == mapped(ORDER)
    assert sink.requests == []  # a preview sends nothing

    r = client.post(REPLAY, json={**selection, "dry_run": False}, headers=ctx["owner_headers"])
    assert r.status_code == 202, r.get_json()
    run_worker()
    assert run_row(run_id).status == "succeeded"
    [request] = sink.requests
    assert request.headers["Idempotency-Key"] == dest["idempotency_key"]
    assert request.json() == mapped(ORDER)


def test_bulk_preview_skips_each_runs_acknowledged_destination_and_replays_once(
    client, make_user, sink, run_worker
):
    ctx = fan_out_flow(client, make_user, sink)
    runs = [
        dead_letter_half_delivered(client, ctx, sink, run_worker, dict(ORDER, order_number=n))
        for n in (3001, 3002, 3003)
    ]
    keys = {r.headers["Idempotency-Key"] for r in sink.requests if r.path == "/archive"}
    sink.default = Answer(status=201)
    selection = {"filter": {"flow": ctx["flow"]["id"]}, "version": "original"}

    preview = client.post(REPLAY, json=selection, headers=ctx["owner_headers"]).get_json()
    assert preview["dry_run"] is True and preview["replayable"] == 3
    assert [p["run_id"] for p in preview["runs"]] == runs
    for planned in preview["runs"]:
        actions = {d["step_id"]: d["action"] for d in planned["destinations"]}
        assert actions == {"send_oms": "skipped", "send_archive": "sent"}
    assert {
        d["idempotency_key"]
        for p in preview["runs"]
        for d in p["destinations"]
        if d["step_id"] == "send_archive"
    } == keys
    sent_before = len(sink.requests)

    r = client.post(REPLAY, json={**selection, "dry_run": False}, headers=ctx["owner_headers"])
    assert r.status_code == 202 and r.get_json()["replayed"] == 3
    run_worker()
    replayed = sink.requests[sent_before:]
    assert sorted(r.path for r in replayed) == ["/archive"] * 3  # /orders not sent again
    assert {r.headers["Idempotency-Key"] for r in replayed} == keys
    assert [run_row(i).status for i in runs] == ["succeeded"] * 3
    batch = r.get_json()["batch"]
    events = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "dead_letter.replayed")
    ).scalars()
    assert sorted((e.object_id, e.detail["batch"]) for e in events) == [
        (str(i), batch) for i in runs
    ]

    # The same filter again: nothing left to replay, nothing sent.
    again = client.post(REPLAY, json=selection, headers=ctx["owner_headers"]).get_json()
    assert again["matched"] == 0 and again["runs"] == []


def test_a_replayed_run_gets_a_fresh_crash_budget(app, client, make_user, sink, run_worker):
    """A run the sweep dead-lettered for crashing its worker N times, once replayed, is not
    dead-lettered again by the sweep at its next lost lease."""
    max_attempts = app.config["FLOWGATE_MAX_RUN_ATTEMPTS"]
    ctx = live_flow(client, make_user, sink)
    run_id = post_order(client, ctx, ORDER)
    expired = utcnow() - timedelta(seconds=5)
    db.session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(status="running", crash_count=max_attempts - 1, lease_until=expired)
    )
    db.session.commit()
    sweep(app)
    run = run_row(run_id)
    assert run.status == "dead_lettered" and "stopped its worker" in run.reason
    assert run.crash_count == max_attempts

    r = client.post(REPLAY, json={"ids": [run_id], "dry_run": False}, headers=ctx["owner_headers"])
    assert r.status_code == 202 and r.get_json()["replayed"] == 1
    assert run_row(run_id).attempts == 0 and run_row(run_id).crash_count == 0
    # The replayed run's worker is killed once (lease lost): it is re-queued, not given up.
    db.session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(status="running", attempts=1, lease_until=expired)
    )
    db.session.commit()
    sweep(app)
    assert run_row(run_id).status == "queued"
    run_worker()
    run = run_row(run_id)
    assert run.status == "succeeded" and run.replays == 1
    assert len(sink.requests) == 1
