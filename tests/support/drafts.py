"""Flows set up through the API the way people do it: a connection, a flow and its draft saved
by an author, then submitted with a contract and approved by an owner. Used by the review
gate's tests, the in-process walking skeleton and the end-to-end tests with real processes
(any Flask test client works, the ``client`` fixture or ``app.test_client()``)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass
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
RETRY = {"max_attempts": 3, "backoff_seconds": 0.1, "max_backoff_seconds": 1}
LAYOUT = {"to_oms_order": {"x": 0, "y": 120}}


def webhook_flow(
    connection_id: int,
    *,
    mapping: str = MAPPING,
    retry: dict[str, Any] = RETRY,
    only_paid: bool = True,
    layout: dict[str, Any] | None = LAYOUT,
    trigger_config: dict[str, Any] | None = None,
    destinations: Iterable[tuple[str, str]] = (("send_oms", "/orders"),),
) -> dict[str, Any]:
    """Webhook → (only paid orders) → map → one POST per (step id, path) of ``destinations``,
    all through ``connection_id`` (also the benchmarks' flows)."""
    chain = ["trigger", "only_paid", "to_oms_order"] if only_paid else ["trigger", "to_oms_order"]
    steps: list[dict[str, Any]] = []
    if only_paid:
        steps.append(
            {"id": "only_paid", "type": "filter", "condition": "financial_status = 'paid'"}
        )
    steps.append({"id": "to_oms_order", "type": "map", "expression": mapping})
    edges = [{"from": a, "to": b} for a, b in zip(chain, chain[1:], strict=False)]
    for step_id, path in destinations:
        steps.append(
            {
                "id": step_id,
                "type": "deliver",
                "connector": "http",
                "connection_id": connection_id,
                "config": {"method": "POST", "path": path},
                "retry": copy.deepcopy(retry),  # tests edit their documents
            }
        )
        edges.append({"from": "to_oms_order", "to": step_id})
    document: dict[str, Any] = {
        "schema_version": 1,
        "trigger": {
            "type": "webhook",
            "config": {"business_key": "$string(order_number)", **(trigger_config or {})},
        },
        "steps": steps,
        "edges": edges,
    }
    if layout is not None:
        document["layout"] = copy.deepcopy(layout)
    return document


def http_connection(
    base_url: str, name: str = "OMS", secrets: dict[str, str] | None = None, **config: Any
) -> dict[str, Any]:
    """The body that creates an http connection to ``base_url`` (more config as keywords)."""
    body: dict[str, Any] = {
        "name": name,
        "connector": "http",
        "config": {"base_url": base_url, **config},
    }
    if secrets is not None:
        body["secrets"] = secrets
    return body


@dataclass
class Draft:
    flow: dict[str, Any]
    connection: dict[str, Any]
    saved: dict[str, Any]  # the draft PUT's answer: version, revision, content_hash, …

    @property
    def number(self) -> int:
        return int(self.saved["version"])

    @property
    def base(self) -> str:
        return f"/api/v1/flows/{self.flow['id']}/versions/{self.number}"


def draft_flow(
    client: Any,
    author_h: dict[str, str],
    connection: dict[str, Any],
    *,
    connection_h: dict[str, str] | None = None,
    flow_name: str = "Orders",
    **document: Any,
) -> Draft:
    """``connection`` (a POST body) is created by ``connection_h`` (default: the author); the
    author creates the flow and saves ``webhook_flow(connection id, **document)`` as its draft."""
    r = client.post("/api/v1/connections", json=connection, headers=connection_h or author_h)
    assert r.status_code == 201, r.get_json()
    created = r.get_json()
    r = client.post("/api/v1/flows", json={"name": flow_name}, headers=author_h)
    assert r.status_code == 201, r.get_json()
    flow = r.get_json()
    r = client.put(
        f"/api/v1/flows/{flow['id']}/draft",
        json={"definition": webhook_flow(created["id"], **document)},
        headers=author_h,
    )
    assert r.status_code == 200, r.get_json()
    return Draft(flow, created, r.get_json())


def submit(client: Any, base: str, headers: dict[str, str], contract: Any = None) -> None:
    """Submit the version at ``base`` with ``contract`` (default: a complete one)."""
    body = {"contract": complete_contract() if contract is None else contract}
    r = client.post(f"{base}/submit", json=body, headers=headers)
    assert r.status_code == 200, r.get_json()


def submit_and_approve(
    client: Any,
    base: str,
    author_h: dict[str, str],
    owner_h: dict[str, str],
    *,
    contract: Any = None,
    comment: str | None = None,
) -> None:
    """The author submits the version at ``base``, the owner approves it (with ``comment`` if
    given): it is live."""
    submit(client, base, author_h, contract)
    body = {} if comment is None else {"comment": comment}
    r = client.post(f"{base}/approve", json=body, headers=owner_h)
    assert r.status_code == 200, r.get_json()
