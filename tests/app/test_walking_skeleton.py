"""The foundation end to end, in-process: API → draft → review → webhook → worker → sink."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.contracts import complete_contract

ORDER = json.loads(
    (
        Path(__file__).resolve().parents[2] / "app" / "demo" / "commerce-order-created.json"
    ).read_text()
)
MAPPING = (
    "{ 'orderRef': 'WEB-' & $string(order_number),"
    " 'lines': [line_items.{'sku': sku, 'qty': quantity}] }"
)


def definition(connection_id: int, **trigger_config: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "trigger": {
            "type": "webhook",
            "config": {"business_key": "$string(order_number)", **trigger_config},
        },
        "steps": [
            {"id": "only_paid", "type": "filter", "condition": "financial_status = 'paid'"},
            {"id": "to_oms_order", "type": "map", "expression": MAPPING},
            {
                "id": "send_oms",
                "type": "deliver",
                "connector": "http",
                "connection_id": connection_id,
                "config": {"method": "POST", "path": "/orders"},
                "retry": {"max_attempts": 3, "backoff_seconds": 0.1, "max_backoff_seconds": 1},
            },
        ],
        "edges": [
            {"from": "trigger", "to": "only_paid"},
            {"from": "only_paid", "to": "to_oms_order"},
            {"from": "to_oms_order", "to": "send_oms"},
        ],
        "layout": {"to_oms_order": {"x": 0, "y": 120}},
    }


def live_flow(client: Any, make_user: Any, sink: Any, **trigger_config: Any) -> dict[str, Any]:
    analyst, analyst_h = make_user("analyst")
    owner, owner_h = make_user("owner")
    r = client.post(
        "/api/v1/connections",
        json={
            "name": "OMS",
            "connector": "http",
            "config": {"base_url": sink.url, "auth": "bearer"},
            "secrets": {"token": "s3cr3t-token"},
        },
        headers=analyst_h,
    )
    assert r.status_code == 201, r.get_json()
    connection = r.get_json()
    assert connection["has_token"] is True and "s3cr3t-token" not in r.get_data(as_text=True)
    r = client.post("/api/v1/flows", json={"name": "Web orders to OMS"}, headers=analyst_h)
    assert r.status_code == 201
    flow = r.get_json()
    r = client.put(
        f"/api/v1/flows/{flow['id']}/draft",
        json={"definition": definition(connection["id"], **trigger_config)},
        headers=analyst_h,
    )
    assert r.status_code == 200, r.get_json()
    number = r.get_json()["version"]
    base = f"/api/v1/flows/{flow['id']}/versions/{number}"
    assert (
        client.post(
            f"{base}/submit", json={"contract": complete_contract()}, headers=analyst_h
        ).status_code
        == 200
    )
    assert (
        client.post(f"{base}/approve", json={"comment": "ok"}, headers=owner_h).status_code == 200
    )
    return {"flow": flow, "headers": analyst_h, "owner_headers": owner_h}


def test_webhook_to_sink_end_to_end(client, make_user, sink, run_worker):
    ctx = live_flow(client, make_user, sink)
    r = client.post(f"/hooks/{ctx['flow']['slug']}", json=ORDER)
    assert r.status_code == 202, r.get_json()
    run_id = r.get_json()["run_id"]
    run_worker()

    assert len(sink.requests) == 1
    request = sink.requests[0]
    assert request.path == "/orders"
    assert request.json() == {
        "orderRef": "WEB-1001",
        "lines": [{"sku": li["sku"], "qty": li["quantity"]} for li in ORDER["line_items"]],
    }
    assert request.headers["Idempotency-Key"].endswith(f"-run-{run_id}-send_oms")
    assert request.headers["Authorization"] == "Bearer s3cr3t-token"

    run = client.get(f"/api/v1/runs/{run_id}", headers=ctx["headers"]).get_json()
    assert run["status"] == "succeeded"
    assert run["business_key"] == "1001"
    assert [s["step_id"] for s in run["steps"]] == ["only_paid", "to_oms_order", "send_oms"]
    assert run["steps"][1]["output"]["orderRef"] == "WEB-1001"
    assert run["deliveries"][0]["status"] == "acknowledged"
    assert run["deliveries"][0]["response_code"] == 201
    assert "s3cr3t-token" not in json.dumps(run)
