"""The foundation end to end, in-process: API → draft → review → webhook → worker → sink."""

from __future__ import annotations

import json
from typing import Any

from tests.support.drafts import MAPPING as MAPPING  # re-exported: other tests import it here
from tests.support.drafts import (
    ORDER,
    draft_flow,
    http_connection,
    submit_and_approve,
    webhook_flow,
)


def definition(connection_id: int, **trigger_config: Any) -> dict[str, Any]:
    """Webhook → only paid orders → map → POST /orders, three attempts."""
    return webhook_flow(connection_id, trigger_config=trigger_config)


def live_flow(client: Any, make_user: Any, sink: Any, **trigger_config: Any) -> dict[str, Any]:
    _, analyst_h = make_user("analyst")
    _, owner_h = make_user("owner")
    oms = http_connection(sink.url, auth="bearer", secrets={"token": "s3cr3t-token"})
    draft = draft_flow(
        client, analyst_h, oms, flow_name="Web orders to OMS", trigger_config=trigger_config
    )
    connection = draft.connection
    assert connection["has_token"] is True and "s3cr3t-token" not in json.dumps(connection)
    submit_and_approve(client, draft.base, analyst_h, owner_h, comment="ok")
    return {"flow": draft.flow, "headers": analyst_h, "owner_headers": owner_h}


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
