"""The editor's API: test run of a draft (simulated destinations), samples, recent payloads."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

from app.extensions import db
from app.models import Run
from tests.app.test_walking_skeleton import ORDER, definition, live_flow

SECRET = "s3cr3t-token"  # the token of live_flow's OMS connection


def _test_run(client: Any, flow_id: int, headers: dict[str, str], **body: Any) -> Any:
    return client.post(f"/api/v1/flows/{flow_id}/test-run", json=body, headers=headers)


def _connection_id(client: Any, headers: dict[str, str]) -> int:
    [connection] = client.get("/api/v1/connections", headers=headers).get_json()["items"]
    return connection["id"]


def test_test_run_of_an_unsaved_draft_simulates_every_destination(client, make_user, sink):
    ctx = live_flow(client, make_user, sink)
    flow_id, headers = ctx["flow"]["id"], ctx["headers"]
    doc = definition(_connection_id(client, headers))
    doc["steps"][1]["expression"] = (
        "{ 'orderRef': 'TEST-' & $string(order_number), 'note': note, 'api_key': 'k-123' }"
    )
    sample = {**ORDER, "note": f"leaked {SECRET} here"}

    r = _test_run(client, flow_id, headers, definition=doc, sample=sample)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["ok"] is True and body["status"] == "succeeded"
    assert [(s["id"], s["status"]) for s in body["steps"]] == [
        ("only_paid", "succeeded"),
        ("to_oms_order", "succeeded"),
        ("send_oms", "succeeded"),
    ]
    mapped = body["steps"][1]
    assert mapped["type"] == "map" and mapped["error"] is None
    assert mapped["input"]["order_number"] == 1001 and mapped["duration_ms"] >= 0
    # The connection's secret and credential-named fields never leave, even echoed in data.
    assert mapped["output"] == {
        "orderRef": "TEST-1001",
        "note": "leaked ******** here",
        "api_key": "********",
    }
    [delivery] = body["deliveries"]
    assert delivery["step"] == "send_oms" and delivery["connector"] == "http"
    assert delivery["connection"] == "OMS"
    assert delivery["target"] == f"POST {sink.url}/orders"
    assert delivery["would_send"] == mapped["output"]
    assert SECRET not in r.get_data(as_text=True)

    # Nothing was sent, nothing was stored; the saved live version is unchanged.
    assert sink.requests == []
    assert db.session.query(Run).count() == 0


def test_failing_step_is_reported_with_position_and_the_rest_is_skipped(client, make_user, sink):
    ctx = live_flow(client, make_user, sink)
    doc = definition(_connection_id(client, ctx["headers"]))
    doc["steps"][1]["expression"] = "{\n  'total': $sum(\n}"
    r = _test_run(client, ctx["flow"]["id"], ctx["headers"], definition=doc, sample=ORDER)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["ok"] is False and body["status"] == "dead_lettered"
    statuses = {s["id"]: s["status"] for s in body["steps"]}
    assert statuses == {"only_paid": "succeeded", "to_oms_order": "failed", "send_oms": "skipped"}
    failed = next(s for s in body["steps"] if s["id"] == "to_oms_order")
    assert failed["error"]["code"] == "S0211"
    assert failed["error"]["position"] == 20  # just past the offending '}'
    assert (failed["error"]["line"], failed["error"]["column"]) == (3, 1)
    assert body["deliveries"] == []


def test_filter_that_says_no_skips_the_rest(client, make_user, sink):
    ctx = live_flow(client, make_user, sink)
    unpaid = {**ORDER, "financial_status": "pending"}
    r = _test_run(client, ctx["flow"]["id"], ctx["headers"], sample=unpaid)  # the live version
    body = r.get_json()
    assert r.status_code == 200 and body["ok"] is True and body["status"] == "filtered"
    assert [(s["id"], s["status"]) for s in body["steps"]] == [
        ("only_paid", "filtered"),
        ("to_oms_order", "skipped"),
        ("send_oms", "skipped"),
    ]
    assert body["deliveries"] == []


def test_samples_pinned_in_the_definition_are_picked_by_index(client, make_user, sink):
    ctx = live_flow(client, make_user, sink)
    doc = definition(_connection_id(client, ctx["headers"]))
    second = copy.deepcopy(ORDER)
    second["order_number"] = 2002
    doc["samples"] = [ORDER, second]
    url_body = {"definition": doc}

    by_index = _test_run(client, ctx["flow"]["id"], ctx["headers"], sample_index=1, **url_body)
    assert by_index.get_json()["deliveries"][0]["would_send"]["orderRef"] == "WEB-2002"
    first = _test_run(client, ctx["flow"]["id"], ctx["headers"], **url_body)  # default: 0
    assert first.get_json()["deliveries"][0]["would_send"]["orderRef"] == "WEB-1001"

    missing = _test_run(client, ctx["flow"]["id"], ctx["headers"], sample_index=5, **url_body)
    assert missing.status_code == 422 and "no sample 5" in missing.get_json()["detail"]
    doc.pop("samples")
    none = _test_run(client, ctx["flow"]["id"], ctx["headers"], definition=doc)
    assert none.status_code == 422 and none.get_json()["problems"][0]["path"] == "/sample"
    both = _test_run(client, ctx["flow"]["id"], ctx["headers"], sample={}, sample_index=0)
    assert both.status_code == 422


def test_a_draft_that_does_not_parse_is_refused_with_problems(client, make_user, sink):
    ctx = live_flow(client, make_user, sink)
    doc = definition(_connection_id(client, ctx["headers"]))
    doc["edges"].append({"from": "send_oms", "to": "only_paid"})  # a cycle
    r = _test_run(client, ctx["flow"]["id"], ctx["headers"], definition=doc, sample=ORDER)
    assert r.status_code == 422
    assert r.get_json()["problems"][0]["message"].startswith("the edges form a cycle")

    broken = {"trigger": {"type": "webhook"}, "steps": [{"type": "map"}], "edges": [{"to": "x"}]}
    r = _test_run(client, ctx["flow"]["id"], ctx["headers"], definition=broken, sample=ORDER)
    assert r.status_code == 422
    paths = [p["path"] for p in r.get_json()["problems"]]
    assert paths == ["/steps/0", "/edges/0/from", "/edges/0/to"]

    # Incomplete but parseable (no destination, no connection): runs; it cannot be submitted.
    partial = {
        "trigger": {"type": "webhook"},
        "steps": [{"id": "m", "type": "map", "expression": "order_number"}],
        "edges": [{"from": "trigger", "to": "m"}],
    }
    r = _test_run(client, ctx["flow"]["id"], ctx["headers"], definition=partial, sample=ORDER)
    assert r.status_code == 200 and r.get_json()["steps"][0]["output"] == 1001

    assert _test_run(client, 9999, ctx["headers"], definition=partial, sample=1).status_code == 404


def test_hostile_expression_is_stopped_by_the_preview_sandbox(client, make_user, sink):
    ctx = live_flow(client, make_user, sink)
    doc = {
        "trigger": {"type": "webhook"},
        "steps": [{"id": "spin", "type": "map", "expression": "($f := function(){$f()}; $f())"}],
        "edges": [{"from": "trigger", "to": "spin"}],
    }
    started = time.monotonic()
    r = _test_run(client, ctx["flow"]["id"], ctx["headers"], definition=doc, sample={})
    assert time.monotonic() - started < 5
    [step] = r.get_json()["steps"]
    assert step["status"] == "failed" and step["error"]["code"] == "resource_limit"


def test_test_run_needs_a_signed_in_user(client, make_user, sink):
    ctx = live_flow(client, make_user, sink)
    r = client.post(f"/api/v1/flows/{ctx['flow']['id']}/test-run", json={"sample": ORDER})
    assert r.status_code == 401


def test_retail_samples_are_listed_and_served(client, make_user):
    _, headers = make_user("analyst")
    items = client.get("/api/v1/samples", headers=headers).get_json()["items"]
    names = [i["name"] for i in items]
    assert "commerce-order-created" in names and "wms-inventory-levels" in names
    assert all(i["size_bytes"] > 0 and i["title"] for i in items)
    order = client.get("/api/v1/samples/commerce-order-created", headers=headers).get_json()
    assert order["business_object"] == "order" and order["payload"] == ORDER
    assert client.get("/api/v1/samples/nope", headers=headers).status_code == 404
    assert client.get("/api/v1/samples").status_code == 401

    spec = client.get("/api/v1/openapi.json").get_json()
    for path in (
        "/api/v1/flows/{flow_id}/test-run",
        "/api/v1/samples",
        "/api/v1/samples/{name}",
        "/api/v1/flows/{flow_id}/recent-payloads",
    ):
        assert path in spec["paths"], path


def test_recent_payloads_capture_real_runs_with_secrets_masked(client, make_user, sink):
    ctx = live_flow(client, make_user, sink)
    slug, flow_id = ctx["flow"]["slug"], ctx["flow"]["id"]
    for number in (1, 2, 3):
        payload = {**ORDER, "order_number": number, "password": "pw", "note": f"x{SECRET}"}
        assert client.post(f"/hooks/{slug}", json=payload).status_code == 202

    r = client.get(f"/api/v1/flows/{flow_id}/recent-payloads?limit=2", headers=ctx["headers"])
    assert r.status_code == 200, r.get_json()
    items = r.get_json()["items"]
    assert [i["payload"]["order_number"] for i in items] == [3, 2]  # newest first
    assert items[0]["business_key"] == "3" and items[0]["flow_version"] == 1
    assert items[0]["payload"]["password"] == "********"
    assert items[0]["payload"]["note"] == "x********"
    assert SECRET not in r.get_data(as_text=True)
    assert client.get("/api/v1/flows/9999/recent-payloads", headers=ctx["headers"]).status_code == (
        404
    )


def test_run_history_masks_credential_fields(client, make_user, sink, run_worker):
    ctx = live_flow(client, make_user, sink)
    payload = {**ORDER, "payment": {"card_token": "tok_visa_4242", "method": "card"}}
    run_id = client.post(f"/hooks/{ctx['flow']['slug']}", json=payload).get_json()["run_id"]
    run_worker()
    run = client.get(f"/api/v1/runs/{run_id}", headers=ctx["headers"]).get_json()
    assert run["status"] == "succeeded"
    assert run["payload"]["payment"] == {"card_token": "********", "method": "card"}
    assert run["steps"][0]["input"]["payment"]["card_token"] == "********"
    assert run["steps"][1]["output"]["orderRef"] == "WEB-1001"  # business data untouched
    assert "tok_visa_4242" not in json.dumps(run)
    # The destination itself got the real message: masking is for people, not delivery.
    assert sink.requests[0].json()["orderRef"] == "WEB-1001"
