"""The review page (GET …/versions/<n>/review) and the checks gating submit and approve."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.app.test_walking_skeleton import ORDER, definition
from tests.support.contracts import complete_contract

EXPECTED = {
    "orderRef": "WEB-1001",
    "lines": [{"sku": li["sku"], "qty": li["quantity"]} for li in ORDER["line_items"]],
}


def _setup(client: Any, make_user: Any, base_url: str) -> dict[str, Any]:
    _, analyst_h = make_user("analyst")
    _, owner_h = make_user("owner")
    connection = client.post(
        "/api/v1/connections",
        json={"name": "OMS", "connector": "http", "config": {"base_url": base_url}},
        headers=analyst_h,
    ).get_json()
    flow = client.post("/api/v1/flows", json={"name": "Orders"}, headers=analyst_h).get_json()
    return {"flow": flow, "connection": connection, "analyst": analyst_h, "owner": owner_h}


def _save(client: Any, ctx: dict[str, Any], doc: dict[str, Any]) -> str:
    r = client.put(
        f"/api/v1/flows/{ctx['flow']['id']}/draft", json={"definition": doc}, headers=ctx["analyst"]
    )
    assert r.status_code == 200, r.get_json()
    return f"/api/v1/flows/{ctx['flow']['id']}/versions/{r.get_json()['version']}"


def _with_checks(connection_id: int, expected: Any = EXPECTED) -> dict[str, Any]:
    doc = definition(connection_id)
    doc["samples"] = [ORDER]
    doc["tests"] = [
        {"name": "web order", "step": "to_oms_order", "input": ORDER, "expected": expected}
    ]
    return doc


def _guard(body: dict[str, Any], gid: str, step: str | None = None) -> dict[str, Any]:
    return next(g for g in body["guardrails"] if g["id"] == gid and g["step"] == step)


def test_review_page_shows_diff_guardrails_tests_and_dry_run(client, make_user, sink):
    ctx = _setup(client, make_user, sink.url)
    first = _save(client, ctx, definition(ctx["connection"]["id"]))
    assert (
        client.post(
            f"{first}/submit", json={"contract": complete_contract()}, headers=ctx["analyst"]
        ).status_code
        == 200
    )
    assert client.post(f"{first}/approve", json={}, headers=ctx["owner"]).status_code == 200

    doc = _with_checks(ctx["connection"]["id"])
    doc["steps"][1]["expression"] = doc["steps"][1]["expression"].replace("'WEB-'", "'W-'")
    doc["tests"][0]["expected"] = {**EXPECTED, "orderRef": "W-1001"}
    doc["layout"] = {"send_oms": {"x": 999, "y": 1}}  # a move is never a change
    second = _save(client, ctx, doc)

    r = client.get(f"{second}/review", headers=ctx["owner"])
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["version"]["number"] == 2 and body["diff_against"] == 1
    [changed] = body["diff"]["steps"]["changed"]
    assert (
        changed["id"] == "to_oms_order" and "+{ 'orderRef': 'W-'" in changed["changes"][0]["diff"]
    )
    assert body["diff"]["tests"]["added"] == ["web order"]
    assert [t["status"] for t in body["sample_tests"]] == ["pass"]
    [run] = body["dry_run"]
    assert run["status"] == "succeeded"
    assert [s["step_id"] for s in run["steps"]] == ["only_paid", "to_oms_order", "send_oms"]
    [destination] = run["destinations"]
    assert destination["step_id"] == "send_oms" and destination["message"]["orderRef"] == "W-1001"
    assert _guard(body, "owner")["status"] == "pass"
    assert _guard(body, "egress", "send_oms")["status"] == "pass"
    assert _guard(body, "expensive_expression", "to_oms_order")["status"] == "pass"
    assert _guard(body, "filter_drops_everything", "only_paid")["status"] == "pass"
    assert body["approvable"] is True and body["blocking"] == []
    assert sink.requests == []  # the dry run sends nothing

    spec = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/flows/{flow_id}/versions/{number}/review" in spec["paths"]


def test_failing_sample_test_blocks_submit_and_fixing_it_allows_approval(client, make_user, sink):
    ctx = _setup(client, make_user, sink.url)
    wrong = {**EXPECTED, "orderRef": "WEB-9999"}
    base = _save(client, ctx, _with_checks(ctx["connection"]["id"], wrong))
    review = client.get(f"{base}/review", headers=ctx["owner"]).get_json()
    assert _guard(review, "sample_tests")["status"] == "fail" and review["approvable"] is False

    refused = client.post(
        f"{base}/submit", json={"contract": complete_contract()}, headers=ctx["analyst"]
    )
    assert refused.status_code == 422
    problem = refused.get_json()
    assert "web order" in problem["detail"]
    [failing] = problem["sample_tests"]
    assert failing["actual"]["orderRef"] == "WEB-1001" and failing["expected"]["orderRef"] == (
        "WEB-9999"
    )

    base = _save(client, ctx, _with_checks(ctx["connection"]["id"]))
    assert (
        client.post(
            f"{base}/submit", json={"contract": complete_contract()}, headers=ctx["analyst"]
        ).status_code
        == 200
    )
    approved = client.post(f"{base}/approve", json={}, headers=ctx["owner"])
    assert approved.status_code == 200, approved.get_json()
    assert approved.get_json()["status"] == "live"


@pytest.mark.parametrize("base_url", ["http://169.254.169.254/latest", "http://10.0.0.1:8080"])
def test_destination_outside_the_egress_allowlist_blocks_approval(app, client, make_user, base_url):
    # Saved while an administrator allowed the range, then the allowlist was narrowed: saving
    # refuses such a connection today, so the review guardrail is what catches it now.
    app.config["FLOWGATE_EGRESS_ALLOW"] = ["10.0.0.0/8", "169.254.0.0/16"]
    app.extensions.pop("flowgate.egress", None)
    ctx = _setup(client, make_user, base_url)  # a literal IP: never contacted
    app.config["FLOWGATE_EGRESS_ALLOW"] = ["127.0.0.0/8"]
    app.extensions.pop("flowgate.egress", None)
    base = _save(client, ctx, _with_checks(ctx["connection"]["id"]))
    review = client.get(f"{base}/review", headers=ctx["owner"]).get_json()
    guard = _guard(review, "egress", "send_oms")
    assert guard["status"] == "fail" and "allowlist" in guard["message"]
    assert (
        client.post(
            f"{base}/submit", json={"contract": complete_contract()}, headers=ctx["analyst"]
        ).status_code
        == 200
    )
    refused = client.post(f"{base}/approve", json={}, headers=ctx["owner"])
    assert refused.status_code == 422
    problem = refused.get_json()
    assert [g["id"] for g in problem["guardrails"]] == ["egress"]
    assert "egress" in problem["detail"]
    version = client.get(base, headers=ctx["owner"]).get_json()
    assert version["status"] == "in_review"


def test_expensive_expression_fails_its_guardrail_and_blocks_approval(app, client, make_user, sink):
    app.config["FLOWGATE_MAPPING_TIMEOUT_MS"] = 300  # before first use: hard kill at 550 ms
    ctx = _setup(client, make_user, sink.url)
    doc = copy.deepcopy(definition(ctx["connection"]["id"]))
    doc["steps"][1]["expression"] = "$sum([1..10000000])"
    doc["samples"] = [ORDER]
    base = _save(client, ctx, doc)
    review = client.get(f"{base}/review", headers=ctx["owner"]).get_json()
    assert _guard(review, "expensive_expression", "to_oms_order")["status"] == "fail"
    assert (
        client.post(
            f"{base}/submit", json={"contract": complete_contract()}, headers=ctx["analyst"]
        ).status_code
        == 200
    )
    refused = client.post(f"{base}/approve", json={}, headers=ctx["owner"])
    assert refused.status_code == 422
    assert "expensive_expression" in [g["id"] for g in refused.get_json()["guardrails"]]
