"""Route and split through the real stack (API → draft → review → webhook → worker → sink),
on SQLite and PostgreSQL: a split of a 3-line order delivers 3 effects, exactly once, even
when the run is executed again (a recovery, or a replay from the dead letters)."""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import update

from app.extensions import db
from app.models import Run
from tests.app.test_execution import make_due, post_order, run_row
from tests.app.test_walking_skeleton import ORDER
from tests.support.contracts import complete_contract
from tests.support.sink import Answer


def definition(connection_id: int) -> dict[str, Any]:
    def deliver(step_id: str, path: str) -> dict[str, Any]:
        return {
            "id": step_id,
            "type": "deliver",
            "connector": "http",
            "connection_id": connection_id,
            "config": {"method": "POST", "path": path},
            "retry": {"max_attempts": 3, "backoff_seconds": 0.1, "max_backoff_seconds": 1},
        }

    return {
        "schema_version": 1,
        "trigger": {"type": "webhook", "config": {"business_key": "$string(order_number)"}},
        "steps": [
            {
                "id": "by_payment",
                "type": "route",
                "cases": [
                    {"name": "paid", "condition": "financial_status = 'paid'"},
                    {"name": "refunded", "condition": "financial_status = 'refunded'"},
                ],
            },
            {"id": "each_line", "type": "split", "expression": "line_items", "max_items": 5},
            {"id": "to_line", "type": "map", "expression": "{'sku': sku, 'qty': quantity}"},
            deliver("send_line", "/order-lines"),
            deliver("send_refund", "/refunds"),
        ],
        "edges": [
            {"from": "trigger", "to": "by_payment"},
            {"from": "by_payment", "to": "each_line", "case": "paid"},
            {"from": "by_payment", "to": "send_refund", "case": "refunded"},
            {"from": "each_line", "to": "to_line"},
            {"from": "to_line", "to": "send_line"},
        ],
    }


def live_flow(client: Any, make_user: Any, sink: Any) -> dict[str, Any]:
    _, analyst_h = make_user("analyst")
    _, owner_h = make_user("owner")
    r = client.post(
        "/api/v1/connections",
        json={"name": "WMS", "connector": "http", "config": {"base_url": sink.url}},
        headers=analyst_h,
    )
    assert r.status_code == 201, r.get_json()
    connection = r.get_json()
    r = client.post("/api/v1/flows", json={"name": "Order lines to WMS"}, headers=analyst_h)
    assert r.status_code == 201
    flow = r.get_json()
    r = client.put(
        f"/api/v1/flows/{flow['id']}/draft",
        json={"definition": definition(connection["id"])},
        headers=analyst_h,
    )
    assert r.status_code == 200, r.get_json()
    base = f"/api/v1/flows/{flow['id']}/versions/{r.get_json()['version']}"
    r = client.post(f"{base}/submit", json={"contract": complete_contract()}, headers=analyst_h)
    assert r.status_code == 200, r.get_json()
    r = client.post(f"{base}/approve", json={"comment": "ok"}, headers=owner_h)
    assert r.status_code == 200, r.get_json()
    return {"flow": flow, "headers": analyst_h, "owner_headers": owner_h, "connection": connection}


def line_requests(sink: Any) -> list[Any]:
    return [r for r in sink.requests if r.path == "/order-lines"]


def requeue(app: Any, run_id: int) -> None:
    """What a recovery (or a replay) does: the same run executes once more."""
    db.session.execute(update(Run).where(Run.id == run_id).values(status="queued"))
    db.session.commit()
    from app.queues import enqueue_runs

    enqueue_runs(app, [run_id])


def test_split_order_delivers_each_line_exactly_once_across_reexecution(
    client, make_user, sink, run_worker, app
):
    assert len(ORDER["line_items"]) == 3
    ctx = live_flow(client, make_user, sink)
    run_id = post_order(client, ctx)
    run_worker()
    run = run_row(run_id)
    assert run.status == "succeeded", run.reason
    sent = line_requests(sink)
    assert [r.json() for r in sent] == [
        {"sku": li["sku"], "qty": li["quantity"]} for li in ORDER["line_items"]
    ]
    keys = [r.headers["Idempotency-Key"] for r in sent]
    assert len(set(keys)) == 3 and all(
        k.endswith(f"-run-{run_id}-send_line[{i}]") for i, k in enumerate(keys)
    )
    assert {d.step_id: d.status for d in run.deliveries} == {
        "send_line[0]": "acknowledged",
        "send_line[1]": "acknowledged",
        "send_line[2]": "acknowledged",
    }

    requeue(app, run_id)
    run_worker()
    run = run_row(run_id)
    assert run.status == "succeeded"
    assert len(line_requests(sink)) == 3  # nothing sent twice
    assert sorted(sink.effects().values()) == [1, 1, 1]

    # The run detail shows the route's choice and every item's own steps.
    r = client.get(f"/api/v1/runs/{run_id}", headers=ctx["headers"])
    assert r.status_code == 200
    steps = {s["step_id"]: s for s in r.get_json()["steps"]}
    assert steps["by_payment"]["output"] == {"cases": ["paid"]}
    assert steps["each_line"]["output"] == {"items": 3}
    assert steps["to_line[1]"]["input"]["sku"] == ORDER["line_items"][1]["sku"]
    assert steps["send_line[2]"]["status"] == "skipped"  # acknowledged on the first execution


def test_a_failing_line_is_retried_alone_with_its_own_key(client, make_user, sink, run_worker, app):
    ctx = live_flow(client, make_user, sink)
    # Line 0 goes through, line 1 gets a 503 once, line 2 goes through.
    sink.scripted = [Answer(status=201), Answer(status=503, headers={"Retry-After": "0"})]
    run_id = post_order(client, ctx)
    run_worker()
    run = run_row(run_id)
    assert run.status == "retrying"
    make_due(run_id)
    from app.services.sweep import sweep

    assert sweep(app)["due_retries"] == 1
    run_worker()
    run = run_row(run_id)
    assert run.status == "succeeded", run.reason
    effects = sink.effects()
    line_keys = [k for k in effects if "send_line" in k]
    assert len(line_keys) == 3
    assert sorted(effects[k] for k in line_keys) == [1, 1, 2]  # the failed line, resent once
    retried = [k for k in line_keys if effects[k] == 2]
    assert retried[0].endswith("send_line[1]")


def test_route_without_a_match_is_filtered_and_over_limit_split_dead_letters(
    client, make_user, sink, run_worker
):
    ctx = live_flow(client, make_user, sink)
    run_id = post_order(client, ctx, dict(ORDER, financial_status="pending"))
    run_worker()
    run = run_row(run_id)
    assert run.status == "filtered" and "no case matched" in run.reason
    assert [(s.step_id, s.status) for s in run.steps] == [("by_payment", "filtered")]

    many = copy.deepcopy(ORDER)
    many["order_number"] = 99001
    many["line_items"] = ORDER["line_items"] * 2  # 6 lines, the limit is 5
    run_id = post_order(client, ctx, many)
    run_worker()
    run = run_row(run_id)
    assert run.status == "dead_lettered"
    assert "split_too_many_items" in run.reason
    assert sink.requests == []


def test_test_run_shows_route_and_split_children(client, make_user, sink):
    ctx = live_flow(client, make_user, sink)
    doc = definition(ctx["connection"]["id"])
    r = client.post(
        f"/api/v1/flows/{ctx['flow']['id']}/test-run",
        json={"definition": doc, "sample": ORDER},
        headers=ctx["headers"],
    )
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["ok"] is True
    ids = [s["id"] for s in body["steps"]]
    assert ids[:2] == ["by_payment", "each_line"]
    assert "send_line[0]" in ids and "send_line[2]" in ids
    assert {s["id"]: s["status"] for s in body["steps"]}["send_refund"] == "skipped"
    assert [d["step"] for d in body["deliveries"]] == [
        "send_line[0]",
        "send_line[1]",
        "send_line[2]",
    ]
    assert sink.requests == []  # a test run sends nothing


def test_replay_of_a_dead_lettered_split_resends_only_the_refused_line(
    client, make_user, sink, run_worker
):
    ctx = live_flow(client, make_user, sink)
    # Line 1 is refused for good (a 4xx); its siblings are acknowledged.
    sink.scripted = [Answer(status=201), Answer(status=422, body=b'{"error": "unknown sku"}')]
    run_id = post_order(client, ctx)
    run_worker()
    run = run_row(run_id)
    assert run.status == "dead_lettered" and "send_line[1]" in run.reason
    keys = {r.headers["Idempotency-Key"] for r in line_requests(sink)}
    assert len(line_requests(sink)) == 3 and len(keys) == 3
    refused_key = line_requests(sink)[1].headers["Idempotency-Key"]

    replay = "/api/v1/dead-letters/replay"
    selection = {"ids": [run_id], "version": "original"}
    preview = client.post(replay, json=selection, headers=ctx["owner_headers"]).get_json()
    [planned] = preview["runs"]
    actions = {d["step_id"]: d["action"] for d in planned["destinations"]}
    assert actions == {"send_line[0]": "skipped", "send_line[1]": "sent", "send_line[2]": "skipped"}
    [resent] = [d for d in planned["destinations"] if d["action"] == "sent"]
    assert resent["idempotency_key"] == refused_key
    assert len(line_requests(sink)) == 3  # a preview sends nothing

    r = client.post(replay, json={**selection, "dry_run": False}, headers=ctx["owner_headers"])
    assert r.status_code == 202, r.get_json()
    run_worker()
    run = run_row(run_id)
    assert run.status == "succeeded", run.reason
    sent = line_requests(sink)
    assert len(sent) == 4 and sent[3].headers["Idempotency-Key"] == refused_key
    assert sent[3].json()["sku"] == ORDER["line_items"][1]["sku"]
    assert sorted(sink.effects().values()) == [1, 1, 2]  # one effect per line
