"""Flow files: export (names, never secrets), import (always a draft), CLI round trip."""

from __future__ import annotations

import json
from typing import Any

from app.extensions import db
from app.models import Connection, FlowVersion
from tests.app.test_contracts_and_notifications import go_live, setup
from tests.support.contracts import complete_contract


def exported(client: Any, make_user: Any, sink: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    ctx = setup(client, make_user, sink)
    connection = db.session.get(Connection, ctx["connection"]["id"])
    connection.config = {**connection.config, "headers": {"X-Api-Key": "from-config"}}
    db.session.commit()
    go_live(client, ctx, complete_contract())
    r = client.get(f"/api/v1/flows/{ctx['flow']['id']}/export", headers=ctx["analyst_h"])
    assert r.status_code == 200, r.get_json()
    return ctx, r.get_json()


def test_export_refers_to_connections_systems_and_users_by_name(client, make_user, sink):
    ctx, doc = exported(client, make_user, sink)
    text = json.dumps(doc)
    assert doc["format"] == "flowgate.flow" and doc["version"]["status"] == "live"
    (deliver,) = [s for s in doc["definition"]["steps"] if s["type"] == "deliver"]
    assert deliver["connection_name"] == "OMS" and "connection_id" not in deliver
    assert doc["contract"]["source_system"] == "Test shop"
    assert doc["contract"]["destination_systems"] == ["Test OMS"]
    assert doc["contract"]["fields"][0]["destination_system"] == "Test OMS"
    assert doc["contract"]["business_owner"] == ctx["analyst"].email  # the first user
    assert "source_system_id" not in doc["contract"]
    # Connection configs and secrets never travel.
    assert "from-config" not in text and sink.url not in text


def test_import_always_creates_a_draft_even_if_the_file_claims_live(client, make_user, sink):
    ctx, doc = exported(client, make_user, sink)
    doc["version"]["status"] = "live"
    doc["flow"]["slug"] = "orders-copy"
    doc["flow"]["name"] = "Orders copy"
    r = client.post("/api/v1/flows/import", json=doc, headers=ctx["analyst_h"])
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["status"] == "draft"
    version = db.session.get(
        FlowVersion,
        db.session.query(FlowVersion.id)
        .filter_by(flow_id=body["flow_id"], number=body["version"])
        .scalar(),
    )
    assert version.definition["steps"][2]["connection_id"] == ctx["connection"]["id"]
    assert version.contract == complete_contract()
    flow = client.get(f"/api/v1/flows/{body['flow_id']}", headers=ctx["analyst_h"]).get_json()
    assert flow["live_version"] is None and flow["draft_version"] == body["version"]
    # Into the same flow (same slug): a new draft next to the live version.
    same = {**doc, "flow": {**doc["flow"], "slug": ctx["flow"]["slug"]}}
    r = client.post("/api/v1/flows/import", json=same, headers=ctx["analyst_h"])
    assert r.status_code == 201 and r.get_json()["flow_id"] == ctx["flow"]["id"]
    live = client.get(f"/api/v1/flows/{ctx['flow']['id']}", headers=ctx["analyst_h"]).get_json()
    assert live["live_version"] == 1 and live["draft_version"] == 2
    # A second import while that draft exists: 409.
    assert (
        client.post("/api/v1/flows/import", json=same, headers=ctx["analyst_h"]).status_code == 409
    )


def test_import_reports_unknown_names_and_bad_files(client, make_user, sink):
    ctx, doc = exported(client, make_user, sink)
    doc["definition"]["steps"][2]["connection_name"] = "Nope"
    doc["contract"]["technical_owner"] = "ghost@example.test"
    r = client.post("/api/v1/flows/import", json=doc, headers=ctx["analyst_h"])
    assert r.status_code == 422
    assert r.get_json()["problems"] == [
        "connection 'Nope' does not exist here",
        "user 'ghost@example.test' does not exist here",
    ]
    r = client.post(
        "/api/v1/flows/import", json={"format": "x", "format_version": 1}, headers=ctx["analyst_h"]
    )
    assert r.status_code == 422


def test_cli_export_validate_import_round_trip(app, client, make_user, sink, tmp_path):
    ctx, _ = exported(client, make_user, sink)
    runner = app.test_cli_runner()
    path = tmp_path / "orders.json"
    result = runner.invoke(args=["flows", "export", ctx["flow"]["slug"], "-o", str(path)])
    assert result.exit_code == 0, result.output
    doc = json.loads(path.read_text())
    assert doc["definition"]["steps"][2]["connection_name"] == "OMS"
    result = runner.invoke(args=["flows", "validate", str(path)])
    assert result.exit_code == 0 and "OK" in result.output
    result = runner.invoke(args=["flows", "import", str(path), "--as", ctx["analyst"].email])
    assert result.exit_code == 0, result.output
    assert "imported as draft" in result.output
    bad = tmp_path / "bad.json"
    doc["definition"]["steps"][2]["connection_name"] = "Nope"
    bad.write_text(json.dumps(doc))
    result = runner.invoke(args=["flows", "validate", str(bad)])
    assert result.exit_code == 1
    assert "connection 'Nope' does not exist here" in result.output
