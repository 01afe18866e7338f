"""What the visual editor needs from the flows API: autosaving incomplete drafts with their
problems placed on steps, checking a definition without storing it, the flow list's last run."""

from __future__ import annotations

from typing import Any


def _flow(client: Any, headers: dict[str, str], name: str = "Editor flow") -> dict[str, Any]:
    response = client.post("/api/v1/flows", json={"name": name}, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _connection(client: Any, headers: dict[str, str], url: str) -> dict[str, Any]:
    response = client.post(
        "/api/v1/connections",
        json={"name": "OMS", "connector": "http", "config": {"base_url": url}},
        headers=headers,
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _incomplete() -> dict[str, Any]:
    """A half-built canvas: a map with a broken expression and an unconnected destination."""
    return {
        "schema_version": 1,
        "trigger": {"type": "webhook", "config": {}},
        "steps": [
            {"id": "to_oms", "type": "map", "expression": "{'a': "},
            {"id": "send_oms", "type": "deliver", "connector": "http", "config": {}},
        ],
        "edges": [{"from": "trigger", "to": "to_oms"}],
        "layout": {"trigger": {"x": 0, "y": 0}, "to_oms": {"x": 200, "y": 0}},
    }


def test_draft_with_problems_is_refused_by_default(client, make_user):
    _, headers = make_user("analyst")
    flow = _flow(client, headers)
    r = client.put(
        f"/api/v1/flows/{flow['id']}/draft", json={"definition": _incomplete()}, headers=headers
    )
    assert r.status_code == 422
    got = client.get(f"/api/v1/flows/{flow['id']}", headers=headers).get_json()
    assert got["draft_version"] is None


def test_autosave_stores_an_incomplete_draft_with_problems_on_steps(client, make_user, sink):
    _, headers = make_user("analyst")
    flow = _flow(client, headers)
    url = f"/api/v1/flows/{flow['id']}/draft?allow_problems=true"
    doc = _incomplete()
    r = client.put(url, json={"definition": doc}, headers=headers)
    assert r.status_code == 200, r.get_json()
    saved = r.get_json()
    assert saved["version"] == 1 and saved["revision"] == 1
    by_code = {(p["code"], p.get("step")) for p in saved["problems"]}
    assert ("invalid_expression", "to_oms") in by_code
    assert ("unreachable", "send_oms") in by_code
    assert ("missing_connection", "send_oms") in by_code
    expression = next(p for p in saved["problems"] if p["code"] == "invalid_expression")
    assert expression["path"] == "/steps/0/expression"

    # It is really stored: the draft reads back identical, layout included.
    version = client.get(f"/api/v1/flows/{flow['id']}/versions/1", headers=headers).get_json()
    assert version["status"] == "draft"
    assert version["definition"] == doc

    # Submitting is refused (the draft has problems, and no integration contract yet).
    r = client.post(f"/api/v1/flows/{flow['id']}/versions/1/submit", headers=headers)
    assert r.status_code == 422
    assert (
        client.get(f"/api/v1/flows/{flow['id']}/versions/1", headers=headers).get_json()["status"]
        == "draft"
    )

    # A stale revision is a conflict, never a silent overwrite, with or without problems.
    r = client.put(url, json={"definition": doc, "revision": 0}, headers=headers)
    assert r.status_code == 409
    assert r.get_json()["current_revision"] == 1

    # Fixed: no problems; moving nodes afterwards keeps the content hash (layout only).
    oms = _connection(client, headers, sink.url)
    doc["steps"][0]["expression"] = "{'a': order_number}"
    doc["steps"][1]["connection_id"] = oms["id"]
    doc["edges"].append({"from": "to_oms", "to": "send_oms"})
    r = client.put(url, json={"definition": doc, "revision": 1}, headers=headers)
    assert r.status_code == 200, r.get_json()
    fixed = r.get_json()
    assert fixed["problems"] == [] and fixed["revision"] == 2
    doc["layout"]["send_oms"] = {"x": 400, "y": 120}
    moved = client.put(url, json={"definition": doc, "revision": 2}, headers=headers).get_json()
    assert moved["content_hash"] == fixed["content_hash"] and moved["revision"] == 3


def test_trigger_and_edge_problems_name_their_node(client, make_user):
    _, headers = make_user("analyst")
    doc = _incomplete()
    doc["trigger"]["config"]["business_key"] = "$string("
    doc["edges"].append({"from": "nowhere", "to": "send_oms"})
    r = client.post("/api/v1/flows/validate", json={"definition": doc}, headers=headers)
    assert r.status_code == 200, r.get_json()
    problems = r.get_json()["problems"]
    trigger = next(p for p in problems if p["path"].startswith("/trigger/config"))
    assert trigger["path"] == "/trigger/config/business_key" and trigger["step"] == "trigger"
    dangling = next(p for p in problems if p["code"] == "dangling_edge")
    assert dangling["edge"] == 1 and "step" not in dangling
    # Validation alone stores nothing and needs a signed-in user.
    assert client.post("/api/v1/flows/validate", json={"definition": doc}).status_code == 401


def test_flow_list_shows_the_last_run_status(client, make_user, app):
    from app.extensions import db
    from app.models import FlowVersion, Run

    _, headers = make_user("analyst")
    flow = _flow(client, headers, "With runs")
    other = _flow(client, headers, "Without runs")
    with app.app_context():
        version = FlowVersion(
            flow_id=flow["id"],
            number=1,
            definition=_incomplete(),
            revision=1,
            content_hash="x" * 64,
            status="draft",
            contributor_ids=[],
        )
        db.session.add(version)
        db.session.flush()
        for status in ("succeeded", "dead_lettered"):
            db.session.add(
                Run(
                    flow_id=flow["id"],
                    flow_version_id=version.id,
                    trigger_kind="webhook",
                    payload={},
                    payload_hash="0" * 64,
                    status=status,
                )
            )
        db.session.commit()
    listed = client.get("/api/v1/flows", headers=headers).get_json()["items"]
    by_name = {f["name"]: f for f in listed}
    assert by_name["With runs"]["last_run"]["status"] == "dead_lettered"
    assert by_name["Without runs"]["last_run"] is None
    one = client.get(f"/api/v1/flows/{other['id']}", headers=headers).get_json()
    assert one["last_run"] is None
    searched = client.get("/api/v1/flows?q=with runs", headers=headers).get_json()
    assert [f["name"] for f in searched["items"]] == ["With runs"]
