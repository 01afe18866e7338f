"""Schedule and manual triggers, on SQLite and PostgreSQL: exactly one run per tick (also with
two schedulers at once), the missed-tick policy, delivery, and the manual run endpoint."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text, update

from app.extensions import db
from app.models import AuditEvent, FlowVersion, Run
from app.services.triggers import fire_due_schedules
from tests.app.test_walking_skeleton import ORDER, live_flow
from tests.support.contracts import complete_contract

T0 = datetime(2026, 1, 1, 12, 0)  # naive UTC, as stored


def _at(minute: int, second: int = 0) -> datetime:
    return datetime(2026, 1, 1, 12, minute, second, tzinfo=UTC)


def _live_scheduled(client: Any, make_user: Any, sink: Any, **config: Any) -> dict[str, Any]:
    analyst, analyst_h = make_user("analyst")
    owner, owner_h = make_user("owner")
    r = client.post(
        "/api/v1/connections",
        json={"name": "Reports", "connector": "http", "config": {"base_url": sink.url}},
        headers=analyst_h,
    )
    assert r.status_code == 201, r.get_json()
    connection_id = r.get_json()["id"]
    flow = client.post("/api/v1/flows", json={"name": "Nightly"}, headers=analyst_h).get_json()
    doc = {
        "schema_version": 1,
        "trigger": {"type": "schedule", "config": {"cron": "* * * * *", **config}},
        "steps": [
            {
                "id": "send",
                "type": "deliver",
                "connector": "http",
                "connection_id": connection_id,
                "config": {"method": "POST", "path": "/ticks"},
            }
        ],
        "edges": [{"from": "trigger", "to": "send"}],
    }
    r = client.put(f"/api/v1/flows/{flow['id']}/draft", json={"definition": doc}, headers=analyst_h)
    assert r.status_code == 200 and r.get_json()["problems"] == [], r.get_json()
    base = f"/api/v1/flows/{flow['id']}/versions/{r.get_json()['version']}"
    assert (
        client.post(
            f"{base}/submit", json={"contract": complete_contract()}, headers=analyst_h
        ).status_code
        == 200
    )
    r = client.post(f"{base}/approve", json={"comment": "ok"}, headers=owner_h)
    assert r.status_code == 200, r.get_json()
    # Pretend it went live an hour before the fixed clock the tests use.
    db.session.execute(
        update(FlowVersion)
        .where(FlowVersion.flow_id == flow["id"])
        .values(live_since=T0.replace(hour=11))
    )
    db.session.commit()
    return flow


def _scheduled_runs(flow_id: int) -> list[Run]:
    db.session.expire_all()
    return list(
        db.session.execute(
            select(Run)
            .where(Run.flow_id == flow_id, Run.trigger_kind == "schedule")
            .order_by(Run.id)
        ).scalars()
    )


def _ticks(flow_id: int) -> list[str]:
    return [run.payload["scheduled_for"] for run in _scheduled_runs(flow_id)]


def _race(app: Any, now: datetime) -> list[dict[str, int]]:
    """Two scheduler "processes" (threads, each with its own session) fire at once."""
    barrier = threading.Barrier(2)
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def scheduler() -> None:
        try:
            with app.app_context():
                barrier.wait(timeout=10)
                results.append(fire_due_schedules(app, now))
                db.session.remove()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == [] and len(results) == 2
    return results


def test_a_tick_fires_exactly_once_however_often_it_is_checked(app, client, make_user, sink):
    flow = _live_scheduled(client, make_user, sink)
    assert fire_due_schedules(app, _at(0, 2))["fired"] == 1
    assert fire_due_schedules(app, _at(0, 2)) == {
        "fired": 0,
        "duplicates": 0,
        "failed": 0,
        "paused": 0,
    }
    assert fire_due_schedules(app, _at(0, 7))["fired"] == 0  # same tick, next beat
    assert fire_due_schedules(app, _at(1, 1))["fired"] == 1
    assert _ticks(flow["id"]) == ["2026-01-01T12:00:00+00:00", "2026-01-01T12:01:00+00:00"]
    runs = _scheduled_runs(flow["id"])
    assert [r.idempotency_key for r in runs] == [
        f"schedule:{flow['id']}:2026-01-01T12:00:00Z",
        f"schedule:{flow['id']}:2026-01-01T12:01:00Z",
    ]


def test_nothing_fires_before_the_version_went_live(app, client, make_user, sink):
    flow = _live_scheduled(client, make_user, sink)
    assert fire_due_schedules(app, datetime(2026, 1, 1, 11, 0, 30, tzinfo=UTC))["fired"] == 0
    assert _ticks(flow["id"]) == []


def test_two_schedulers_racing_for_one_tick_record_one_run(app, client, make_user, sink):
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("concurrent schedulers are exercised on PostgreSQL")
    flow = _live_scheduled(client, make_user, sink)
    db.session.remove()
    for minute in range(3):
        results = _race(app, _at(minute, 1))
        assert sorted(r["fired"] for r in results) == [0, 1], results
        assert sum(r["duplicates"] for r in results) <= 1
        assert all(r["failed"] == 0 for r in results)
    assert len(_ticks(flow["id"])) == 3


@pytest.mark.parametrize(
    ("missed", "after_downtime"),
    [("skip", []), ("run_once", ["2026-01-01T12:10:00+00:00"])],
)
def test_missed_ticks_after_downtime_follow_the_policy(
    app, client, make_user, sink, missed, after_downtime
):
    flow = _live_scheduled(client, make_user, sink, missed=missed)
    assert fire_due_schedules(app, _at(0, 3))["fired"] == 1
    # The schedulers were down from 12:00:03 to 12:10:30: ticks 12:01 ... 12:10 were missed.
    fire_due_schedules(app, _at(10, 30))
    fire_due_schedules(app, _at(10, 35))
    assert _ticks(flow["id"]) == ["2026-01-01T12:00:00+00:00", *after_downtime]
    # Back on the beat: the next tick fires on time under either policy, never a burst.
    assert fire_due_schedules(app, _at(11, 2))["fired"] == 1
    assert _ticks(flow["id"])[-1] == "2026-01-01T12:11:00+00:00"
    assert len(_ticks(flow["id"])) == 2 + len(after_downtime)


def test_a_scheduled_run_is_delivered_with_its_tick(app, client, make_user, sink, run_worker):
    flow = _live_scheduled(
        client, make_user, sink, timezone="Europe/London", payload={"report": "stock"}
    )
    assert fire_due_schedules(app, _at(0, 1))["fired"] == 1
    run_worker()
    assert len(sink.requests) == 1
    assert sink.requests[0].path == "/ticks"
    assert sink.requests[0].json() == {
        "scheduled_for": "2026-01-01T12:00:00+00:00",  # London is on GMT in January
        "payload": {"report": "stock"},
    }
    [run] = _scheduled_runs(flow["id"])
    assert run.status == "succeeded"


def test_an_owner_runs_a_live_flow_by_hand(app, client, make_user, sink, run_worker):
    ctx = live_flow(client, make_user, sink)
    flow_id = ctx["flow"]["id"]
    r = client.post(
        f"/api/v1/flows/{flow_id}/run", json={"payload": ORDER}, headers=ctx["owner_headers"]
    )
    assert r.status_code == 202, r.get_json()
    run_id = r.get_json()["run_id"]
    run_worker()
    assert len(sink.requests) == 1
    assert sink.requests[0].json()["orderRef"] == "WEB-1001"
    run = client.get(f"/api/v1/runs/{run_id}", headers=ctx["headers"]).get_json()
    assert run["status"] == "succeeded"
    assert db.session.get(Run, run_id).trigger_kind == "manual"
    events = (
        db.session.execute(select(AuditEvent).where(AuditEvent.action == "flow.run_manually"))
        .scalars()
        .all()
    )
    assert [(e.object_type, e.object_id) for e in events] == [("flow", str(flow_id))]
    _, admin_h = make_user("admin")
    r = client.post(f"/api/v1/flows/{flow_id}/run", json={"payload": ORDER}, headers=admin_h)
    assert r.status_code == 202 and r.get_json()["run_id"] != run_id


def test_analysts_cannot_run_a_flow_by_hand(app, client, make_user, sink):
    ctx = live_flow(client, make_user, sink)
    r = client.post(
        f"/api/v1/flows/{ctx['flow']['id']}/run", json={"payload": ORDER}, headers=ctx["headers"]
    )
    assert r.status_code == 403
    assert db.session.execute(select(Run)).first() is None


def test_manual_run_needs_a_live_version_and_a_flow(app, client, make_user):
    _, analyst_h = make_user("analyst")
    _, owner_h = make_user("owner")
    flow = client.post("/api/v1/flows", json={"name": "Draft only"}, headers=analyst_h).get_json()
    r = client.post(f"/api/v1/flows/{flow['id']}/run", json={"payload": {}}, headers=owner_h)
    assert r.status_code == 409
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert client.post("/api/v1/flows/999/run", json={}, headers=owner_h).status_code == 404
    r = client.post(f"/api/v1/flows/{flow['id']}/run", json={"other": 1}, headers=owner_h)
    assert r.status_code == 422


def test_a_manual_flow_runs_with_the_given_payload(app, client, make_user, sink, run_worker):
    flow = _live_scheduled(client, make_user, sink)
    version = db.session.execute(
        select(FlowVersion).where(FlowVersion.flow_id == flow["id"])
    ).scalar_one()
    definition = dict(version.definition)
    definition["trigger"] = {"type": "manual"}
    # A manual trigger validates; run it by hand (the endpoint ignores the trigger type).
    from app import runtime
    from flows.validation import validate

    assert validate(definition, runtime.registry(), lambda _id: "http") == []
    _, owner_h = make_user("owner")
    r = client.post(f"/api/v1/flows/{flow['id']}/run", json={"payload": {"x": 1}}, headers=owner_h)
    assert r.status_code == 202
    run_worker()
    assert sink.requests[0].json() == {"x": 1}


def test_a_manual_run_commits_its_audit_event_with_the_run(app, client, make_user, sink):
    """The run and the ``flow.run_manually`` event are one transaction: both are committed
    when the API answers, seen from another connection, with no worker involved."""
    ctx = live_flow(client, make_user, sink)
    flow_id = ctx["flow"]["id"]
    r = client.post(
        f"/api/v1/flows/{flow_id}/run", json={"payload": ORDER}, headers=ctx["owner_headers"]
    )
    assert r.status_code == 202, r.get_json()
    db.session.remove()
    with db.engine.connect() as other:
        events = other.execute(
            text("SELECT object_id FROM audit_events WHERE action = 'flow.run_manually'")
        ).all()
        runs = other.execute(
            text("SELECT trigger_kind FROM runs WHERE id = :id"), {"id": r.get_json()["run_id"]}
        ).all()
    assert [e.object_id for e in events] == [str(flow_id)]
    assert [run.trigger_kind for run in runs] == ["manual"]
