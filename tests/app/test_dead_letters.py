"""Dead letters: listed with their reason and failed input, previewed, replayed once."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select, update

from app.extensions import db
from app.models import AuditEvent, FlowVersion
from app.services.sweep import sweep
from tests.app.test_execution import make_due, post_order, run_row
from tests.app.test_walking_skeleton import MAPPING, ORDER, definition, live_flow
from tests.support.contracts import complete_contract
from tests.support.sink import Answer

REPLAY = "/api/v1/dead-letters/replay"


def connection_id(client: Any, ctx: dict[str, Any]) -> int:
    return client.get("/api/v1/connections", headers=ctx["headers"]).get_json()["items"][0]["id"]


def approve(client: Any, ctx: dict[str, Any], doc: dict[str, Any]) -> int:
    """Save ``doc`` as a new version (analyst), submit it, approve it (owner): live."""
    flow_id = ctx["flow"]["id"]
    r = client.put(
        f"/api/v1/flows/{flow_id}/draft", json={"definition": doc}, headers=ctx["headers"]
    )
    assert r.status_code == 200, r.get_json()
    number = r.get_json()["version"]
    base = f"/api/v1/flows/{flow_id}/versions/{number}"
    assert (
        client.post(
            f"{base}/submit", json={"contract": complete_contract()}, headers=ctx["headers"]
        ).status_code
        == 200
    )
    r = client.post(f"{base}/approve", json={}, headers=ctx["owner_headers"])
    assert r.status_code == 200, r.get_json()
    return number


def fan_out_flow(client: Any, make_user: Any, sink: Any) -> dict[str, Any]:
    """Live flow delivering the mapped order to /orders (send_oms) and /archive."""
    ctx = live_flow(client, make_user, sink)
    doc = definition(connection_id(client, ctx))
    doc["steps"].append(
        {
            "id": "send_archive",
            "type": "deliver",
            "connector": "http",
            "connection_id": connection_id(client, ctx),
            "config": {"path": "/archive"},
            "retry": {"max_attempts": 3, "backoff_seconds": 0.1, "max_backoff_seconds": 1},
        }
    )
    doc["edges"].append({"from": "to_oms_order", "to": "send_archive"})
    ctx["doc"] = doc
    ctx["version"] = approve(client, ctx, doc)
    return ctx


def dead_letter_half_delivered(client, ctx, sink, run_worker, payload=ORDER) -> int:
    """/orders acknowledges, /archive refuses for good: a dead letter with one ack."""
    sink.scripted = [Answer(status=201), Answer(status=400, body=b'{"error": "no archive"}')]
    run_id = post_order(client, ctx, payload)
    run_worker()
    assert sorted(r.path for r in sink.requests[-2:]) == ["/archive", "/orders"]
    assert run_row(run_id).status == "dead_lettered"
    return run_id


def mapped(order: dict[str, Any]) -> dict[str, Any]:
    return {
        "orderRef": f"WEB-{order['order_number']}",
        "lines": [{"sku": li["sku"], "qty": li["quantity"]} for li in order["line_items"]],
    }


def read(client: Any, url: str, headers: dict[str, str]) -> Any:
    """GET in the test's app context, whose session the request shares: end the request's
    transaction (token ``last_used_at``) so that SQLite does not stay write-locked for the
    worker that runs next."""
    response = client.get(url, headers=headers)
    db.session.rollback()
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def requests_to(sink: Any, path: str) -> list[Any]:
    return [r for r in sink.requests if r.path == path]


def test_sink_400_becomes_a_dead_letter_with_reason_response_and_failed_input(
    client, make_user, sink, run_worker
):
    ctx = live_flow(client, make_user, sink)
    ok_run = post_order(client, ctx, dict(ORDER, order_number=1000))
    run_worker()
    sink.default = Answer(status=400, body=b'{"error": "unknown sku", "echo": "s3cr3t-token"}')
    run_id = post_order(client, ctx)
    run_worker()

    r = client.get("/api/v1/dead-letters", headers=ctx["headers"])  # any signed-in role
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["total"] == 1 and [i["id"] for i in body["items"]] == [run_id]
    item = body["items"][0]
    assert ok_run != run_id
    assert item["flow_id"] == ctx["flow"]["id"] and item["flow_name"] == "Web orders to OMS"
    assert item["flow_version"] == 1 and item["business_key"] == "1001"
    assert "send_oms" in item["reason"] and "permanent" in item["reason"]
    assert item["attempts"] == 1 and item["replays"] == 0
    assert item["finished_at"].endswith("Z") and item["received_at"]
    [failed] = item["failed_steps"]
    assert failed["step_id"] == "send_oms" and failed["status"] == "failed"
    assert failed["error"]["code"] == "delivery_failed" and failed["error"]["status_code"] == 400
    assert failed["input"] == mapped(ORDER)  # what the step received: the mapped order
    delivery = failed["delivery"]
    assert delivery["status"] == "dead_lettered" and delivery["attempts"] == 1
    assert delivery["response_code"] == 400 and "unknown sku" in delivery["response_excerpt"]
    assert "HTTP 400" in delivery["last_error"]
    assert delivery["idempotency_key"].endswith(f"-run-{run_id}-send_oms")
    assert "s3cr3t-token" not in json.dumps(body)  # the connector redacted the echo


def test_sink_503_on_every_attempt_dead_letters_with_last_status_and_redacted_excerpt(
    client, make_user, sink, run_worker, app
):
    """Reliability case 9: a destination that answers 503 until the policy's max_attempts is
    given up on, and the dead letter says why, with what, after how many tries."""
    ctx = live_flow(client, make_user, sink)  # bearer token s3cr3t-token; 3 attempts
    # The destination echoes the credential it was sent in its error body.
    sink.default = Answer(
        status=503, body=b'{"error": "overloaded", "you_sent": "Bearer s3cr3t-token"}'
    )
    run_id = post_order(client, ctx)
    for attempt in (1, 2, 3):
        run_worker()
        run = run_row(run_id)
        assert len(sink.requests) == attempt
        if attempt < 3:
            assert run.status == "retrying" and run.next_attempt_at is not None
            make_due(run_id)
            sweep(app)
    assert sink.requests[0].headers["Authorization"] == "Bearer s3cr3t-token"  # planted
    assert len({r.headers["Idempotency-Key"] for r in sink.requests}) == 1
    assert run_row(run_id).status == "dead_lettered"

    body = read(client, "/api/v1/dead-letters", ctx["headers"])
    assert body["total"] == 1 and [i["id"] for i in body["items"]] == [run_id]
    item = body["items"][0]
    assert "send_oms" in item["reason"] and "gave up after 3 attempts" in item["reason"]
    assert item["attempts"] == 3 and item["replays"] == 0
    assert item["received_at"] and item["finished_at"].endswith("Z")
    [failed] = item["failed_steps"]
    assert failed["step_id"] == "send_oms" and failed["status"] == "failed"
    assert failed["error"]["code"] == "delivery_failed" and failed["error"]["status_code"] == 503
    assert failed["input"] == mapped(ORDER)  # what the step received: the mapped order
    delivery = failed["delivery"]
    assert delivery["status"] == "dead_lettered" and delivery["attempts"] == 3
    assert delivery["response_code"] == 503 and "HTTP 503" in delivery["last_error"]
    excerpt = delivery["response_excerpt"]
    assert "overloaded" in excerpt and "you_sent" in excerpt  # the body, echo included...
    assert "s3cr3t-token" not in excerpt  # ...with the token redacted
    assert delivery["updated_at"].endswith("Z")
    assert "s3cr3t-token" not in json.dumps(body)

    run = read(client, f"/api/v1/runs/{run_id}", ctx["headers"])  # the run's own view agrees
    assert run["status"] == "dead_lettered" and run["attempts"] == 3
    [seen] = run["deliveries"]
    assert seen["status"] == "dead_lettered" and seen["attempts"] == 3
    assert seen["response_code"] == 503 and "overloaded" in seen["response_excerpt"]
    assert "s3cr3t-token" not in json.dumps(run)


def test_list_filters_by_flow_reason_and_time(client, make_user, sink, run_worker):
    first = live_flow(client, make_user, sink)
    r = client.post("/api/v1/flows", json={"name": "Web orders to ERP"}, headers=first["headers"])
    second = dict(first, flow=r.get_json())
    approve(client, second, definition(connection_id(client, first)))
    sink.default = Answer(status=400)
    a = post_order(client, first)
    run_worker()
    sink.default = Answer(status=422)
    b = post_order(client, second)
    run_worker()
    h = first["headers"]

    def ids(query: str) -> list[int]:
        r = client.get(f"/api/v1/dead-letters?{query}", headers=h)
        assert r.status_code == 200, r.get_json()
        return [item["id"] for item in r.get_json()["items"]]

    assert ids("") == [b, a]  # newest first
    assert ids(f"flow={first['flow']['id']}") == [a]
    assert ids(f"flow={second['flow']['id']}") == [b]
    assert ids("reason=http%20422") == [b]  # case-insensitive substring
    assert ids("reason=PERMANENT") == [b, a]
    assert ids("reason=100%25") == []  # % is matched literally
    assert ids("since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00%2B02:00") == [b, a]
    assert ids("since=2999-01-01T00:00:00Z") == []
    assert ids("limit=1&offset=1") == [a]
    r = client.get("/api/v1/dead-letters?limit=0", headers=h)
    assert r.status_code == 422 and r.mimetype == "application/problem+json"


def test_dry_run_previews_and_sends_nothing(client, make_user, sink, run_worker):
    ctx = fan_out_flow(client, make_user, sink)
    run_id = dead_letter_half_delivered(client, ctx, sink, run_worker)
    failed_key = requests_to(sink, "/archive")[0].headers["Idempotency-Key"]
    sent_before = len(sink.requests)
    sink.default = Answer(status=201)

    r = client.post(REPLAY, json={"ids": [run_id]}, headers=ctx["owner_headers"])  # dry by default
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["dry_run"] is True and body["version"] == "original" and body["batch"] is None
    assert body["replayable"] == 1 and body["not_replayable"] == []
    [preview] = body["runs"]
    assert preview["run_id"] == run_id and preview["version"] == ctx["version"]
    assert preview["previous_version"] == ctx["version"] and preview["outcome"] == "succeeded"
    by_step = {d["step_id"]: d for d in preview["destinations"]}
    assert by_step["send_oms"]["action"] == "skipped" and by_step["send_oms"]["message"] is None
    assert by_step["send_oms"]["previous_status"] == "acknowledged"
    archive = by_step["send_archive"]
    assert archive["action"] == "sent" and archive["previous_status"] == "dead_lettered"
    assert archive["message"] == mapped(ORDER)
    assert archive["idempotency_key"] == failed_key
    assert archive["connector"] == "http" and archive["connection_name"] == "OMS"

    run_worker()
    assert len(sink.requests) == sent_before  # nothing sent, nothing queued
    run = run_row(run_id)
    assert run.status == "dead_lettered" and run.replays == 0
    assert {d.step_id: d.status for d in run.deliveries} == {
        "send_oms": "acknowledged",
        "send_archive": "dead_lettered",
    }
    assert (
        db.session.execute(select(AuditEvent).where(AuditEvent.action.like("dead%"))).first()
        is None
    )


def test_only_owners_replay(client, make_user, sink, run_worker):
    ctx = live_flow(client, make_user, sink)
    sink.default = Answer(status=400)
    run_id = post_order(client, ctx)
    run_worker()
    for role in ("analyst", "admin"):
        _, headers = make_user(role)
        for dry_run in (True, False):
            r = client.post(REPLAY, json={"ids": [run_id], "dry_run": dry_run}, headers=headers)
            assert r.status_code == 403, (role, r.get_json())
            assert r.mimetype == "application/problem+json"
    r = client.post(REPLAY, json={"ids": [run_id]})
    assert r.status_code == 401
    assert run_row(run_id).status == "dead_lettered"


def test_replay_original_delivers_once_with_the_same_key_and_skips_the_acknowledged(
    client, make_user, sink, run_worker
):
    ctx = fan_out_flow(client, make_user, sink)
    run_id = dead_letter_half_delivered(client, ctx, sink, run_worker)
    failed_key = requests_to(sink, "/archive")[0].headers["Idempotency-Key"]
    sink.default = Answer(status=201)  # the destination is fixed

    r = client.post(
        REPLAY,
        json={"ids": [run_id], "version": "original", "dry_run": False},
        headers=ctx["owner_headers"],
    )
    assert r.status_code == 202, r.get_json()
    body = r.get_json()
    assert body["dry_run"] is False and body["replayed"] == 1 and body["batch"]
    assert body["runs"][0]["run_id"] == run_id and body["runs"][0]["status"] == "queued"
    assert body["runs"][0]["version"] == ctx["version"]
    run = run_row(run_id)
    assert run.status == "queued" and run.reason is None and run.finished_at is None
    archive = next(d for d in run.deliveries if d.step_id == "send_archive")
    assert archive.status == "retrying" and archive.attempts == 0
    assert archive.idempotency_key == failed_key

    status = read(client, f"/api/v1/dead-letters/replay-status?ids={run_id}", ctx["headers"])
    assert status["done"] is False and status["counts"] == {"queued": 1}

    run_worker()
    run = run_row(run_id)
    assert run.status == "succeeded" and run.replays == 1 and run.replayed_at is not None
    archive_requests = requests_to(sink, "/archive")
    assert len(archive_requests) == 2  # the refused attempt, then the replay
    assert archive_requests[1].headers["Idempotency-Key"] == failed_key
    assert archive_requests[1].json() == mapped(ORDER)
    assert len(requests_to(sink, "/orders")) == 1  # acknowledged sibling not re-sent
    steps = {s.step_id: s.status for s in run.steps}
    assert steps["send_oms"] == "skipped" and steps["send_archive"] == "succeeded"
    archive = next(d for d in run.deliveries if d.step_id == "send_archive")
    assert archive.status == "acknowledged" and archive.attempts == 1

    status = client.get(
        f"/api/v1/dead-letters/replay-status?ids={run_id},999999", headers=ctx["headers"]
    ).get_json()
    assert status["done"] is True and status["counts"] == {"succeeded": 1}
    assert status["missing"] == [999999] and status["runs"][0]["replays"] == 1
    assert client.get("/api/v1/dead-letters", headers=ctx["headers"]).get_json()["total"] == 0

    [event] = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "dead_letter.replayed")
    ).scalars()
    assert event.object_type == "run" and event.object_id == str(run_id)
    assert event.actor_label.startswith("owner")
    assert event.detail["version"] == "original" and event.detail["batch"] == body["batch"]
    assert "send_archive" in event.detail["previous_reason"]
    assert event.detail["deliveries_reset"] == 1

    # A second replay of the same id: it is no longer a dead letter.
    r = client.post(REPLAY, json={"ids": [run_id], "dry_run": False}, headers=ctx["owner_headers"])
    assert r.status_code == 202
    assert r.get_json()["replayed"] == 0
    assert r.get_json()["not_replayable"] == [
        {"id": run_id, "reason": "run is succeeded, not dead-lettered"}
    ]


def test_fixed_mapping_then_bulk_replay_on_live_delivers_the_new_output_once(
    client, make_user, sink, run_worker
):
    """Acceptance: sink answering 400 → dead letter; new version approved; bulk replay."""
    ctx = live_flow(client, make_user, sink)
    sink.default = Answer(status=400, body=b'{"error": "currency is required"}')
    orders = [dict(ORDER, order_number=n) for n in (2001, 2002)]
    run_ids = [post_order(client, ctx, order) for order in orders]
    run_worker()
    assert [run_row(i).status for i in run_ids] == ["dead_lettered", "dead_lettered"]
    failed_keys = [r.headers["Idempotency-Key"] for r in sink.requests]

    doc = definition(connection_id(client, ctx))
    doc["steps"][1]["expression"] = MAPPING[:-1] + ", 'currency': currency }"
    fixed = approve(client, ctx, doc)
    assert fixed == 2
    sink.default = Answer(status=201)
    selection = {"filter": {"flow": ctx["flow"]["id"], "reason": "HTTP 400"}, "version": "live"}

    preview = client.post(REPLAY, json=selection, headers=ctx["owner_headers"]).get_json()
    assert preview["matched"] == 2 and preview["more"] is False
    assert [p["run_id"] for p in preview["runs"]] == run_ids  # oldest first
    for p, order in zip(preview["runs"], orders, strict=True):
        assert p["version"] == 2 and p["previous_version"] == 1
        [dest] = p["destinations"]
        assert dest["action"] == "sent"
        assert dest["message"] == dict(mapped(order), currency=ORDER["currency"])
    original = client.post(
        REPLAY, json=dict(selection, version="original"), headers=ctx["owner_headers"]
    ).get_json()
    assert [p["version"] for p in original["runs"]] == [1, 1]
    assert "currency" not in original["runs"][0]["destinations"][0]["message"]
    assert len(sink.requests) == 2

    r = client.post(REPLAY, json=dict(selection, dry_run=False), headers=ctx["owner_headers"])
    assert r.status_code == 202, r.get_json()
    assert r.get_json()["replayed"] == 2
    run_worker()

    assert [run_row(i).status for i in run_ids] == ["succeeded", "succeeded"]
    replayed = sink.requests[2:]
    assert len(replayed) == 2
    assert [r.headers["Idempotency-Key"] for r in replayed] == failed_keys
    assert [r.json() for r in replayed] == [
        dict(mapped(order), currency=ORDER["currency"]) for order in orders
    ]
    assert all(count == 2 for count in sink.effects().values())  # one refusal + one delivery
    run = run_row(run_ids[0])
    assert run.version.number == 2 and run.original_version_id is not None
    assert db.session.get(FlowVersion, run.original_version_id).number == 1
    runs_api = client.get(f"/api/v1/runs/{run_ids[0]}", headers=ctx["headers"]).get_json()
    assert runs_api["flow_version"] == 2 and runs_api["status"] == "succeeded"
    events = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "dead_letter.replayed")
    ).scalars()
    assert sorted(
        (int(e.object_id), e.detail["version"], e.detail["version_number"]) for e in events
    ) == [(i, "live", 2) for i in sorted(run_ids)]  # ids as numbers: "10" sorts before "9"


def test_ids_that_are_not_dead_letters_are_reported_not_replayable(
    client, make_user, sink, run_worker
):
    ctx = live_flow(client, make_user, sink)
    ok_run = post_order(client, ctx, dict(ORDER, order_number=1))
    run_worker()
    sink.default = Answer(status=400)
    dead = post_order(client, ctx)
    run_worker()
    sink.default = Answer(status=201)
    body = {"ids": [ok_run, dead, 424242, dead], "dry_run": False}

    r = client.post(REPLAY, json=body, headers=ctx["owner_headers"])
    assert r.status_code == 202, r.get_json()
    result = r.get_json()
    assert result["replayed"] == 1 and [run["run_id"] for run in result["runs"]] == [dead]
    assert result["not_replayable"] == [
        {"id": ok_run, "reason": "run is succeeded, not dead-lettered"},
        {"id": 424242, "reason": "run does not exist"},
    ]
    run_worker()
    assert run_row(dead).status == "succeeded" and run_row(ok_run).status == "succeeded"


def test_live_replay_needs_a_live_version(client, make_user, sink, run_worker):
    ctx = live_flow(client, make_user, sink)
    sink.default = Answer(status=400)
    run_id = post_order(client, ctx)
    run_worker()
    db.session.execute(update(FlowVersion).values(status="retired"))
    db.session.commit()
    for dry_run in (True, False):
        r = client.post(
            REPLAY,
            json={"ids": [run_id], "version": "live", "dry_run": dry_run},
            headers=ctx["owner_headers"],
        )
        assert r.status_code == 409, r.get_json()
        assert r.mimetype == "application/problem+json"
        assert r.get_json()["flow_ids"] == [ctx["flow"]["id"]]
    assert run_row(run_id).status == "dead_lettered"
    r = client.post(REPLAY, json={"ids": [run_id], "dry_run": False}, headers=ctx["owner_headers"])
    assert r.status_code == 202 and r.get_json()["replayed"] == 1  # the original still runs


def test_bad_replay_bodies_are_422_problems(client, make_user):
    _, owner_h = make_user("owner")
    bad_bodies = [
        {"ids": [1], "filter": {"flow": 1}},
        {},
        {"version": "live"},
        {"ids": [1], "version": "latest"},
        {"ids": []},
        {"ids": list(range(1, 1002))},
        {"ids": ["x"]},
        {"ids": None},
        {"ids": [1], "dry_run": "maybe"},
        {"ids": [1], "surprise": True},
        {"filter": {"flow": 1, "status": "succeeded"}},
        {"filter": {"since": "yesterday"}},
    ]
    for body in bad_bodies:
        r = client.post(REPLAY, json=body, headers=owner_h)
        assert r.status_code == 422, (body, r.get_json())
        assert r.mimetype == "application/problem+json"
        assert r.get_json()["status"] == 422 and r.get_json()["errors"]
    r = client.get("/api/v1/dead-letters/replay-status?ids=a,b", headers=owner_h)
    assert r.status_code == 422
    # An empty selection is not an error: nothing matches, nothing happens.
    r = client.post(REPLAY, json={"filter": {}, "dry_run": False}, headers=owner_h)
    assert r.status_code == 202 and r.get_json()["replayed"] == 0


def test_replay_is_documented_in_openapi(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    post = spec["paths"]["/api/v1/dead-letters/replay"]["post"]
    assert "requestBody" in post and {"200", "202", "403", "409", "422"} <= set(post["responses"])
    assert "get" in spec["paths"]["/api/v1/dead-letters"]
    assert "get" in spec["paths"]["/api/v1/dead-letters/replay-status"]
