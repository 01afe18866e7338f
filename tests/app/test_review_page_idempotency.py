"""The review page lists each destination's idempotency and warns where retries may duplicate."""

from __future__ import annotations

from typing import Any


def _connection(client: Any, headers: Any, name: str, connector: str, config: dict) -> int:
    r = client.post(
        "/api/v1/connections",
        json={"name": name, "connector": connector, "config": config},
        headers=headers,
    )
    assert r.status_code == 201, r.get_json()
    return int(r.get_json()["id"])


def test_review_page_shows_destination_idempotency_and_warnings(app, client, make_user, tmp_path):
    app.config["FLOWGATE_FILE_ROOTS"] = [str(tmp_path)]
    _, analyst_h = make_user("analyst")
    _, owner_h = make_user("owner")
    http_id = _connection(client, analyst_h, "OMS", "http", {"base_url": "http://127.0.0.1:9"})
    mail_id = _connection(
        client,
        analyst_h,
        "Mail",
        "email",
        {"host": "127.0.0.1", "port": 2525, "security": "none", "from_address": "o@shop.example"},
    )
    db_id = _connection(
        client,
        analyst_h,
        "Warehouse",
        "sql",
        {"dialect": "sqlite", "sqlite_path": str(tmp_path / "wh.db")},
    )
    steps = [
        {
            "id": "to_oms",
            "type": "deliver",
            "connector": "http",
            "connection_id": http_id,
            "config": {"method": "POST", "path": "/orders"},
        },
        {
            "id": "stock",
            "type": "deliver",
            "connector": "sql",
            "connection_id": db_id,
            "config": {"table": "stock", "mode": "upsert", "key_columns": ["sku"]},
        },
        {
            "id": "log",
            "type": "deliver",
            "connector": "sql",
            "connection_id": db_id,
            "config": {"table": "log"},
        },
        {
            "id": "mail",
            "type": "deliver",
            "connector": "email",
            "connection_id": mail_id,
            "config": {"to": ["ops@shop.example"], "subject": "s", "body": "b"},
            "retry": {"max_attempts": 3},
        },
    ]
    doc = {
        "schema_version": 1,
        "trigger": {"type": "webhook"},
        "steps": steps,
        "edges": [{"from": "trigger", "to": s["id"]} for s in steps],
    }
    flow = client.post("/api/v1/flows", json={"name": "Fan"}, headers=analyst_h).get_json()
    r = client.put(f"/api/v1/flows/{flow['id']}/draft", json={"definition": doc}, headers=analyst_h)
    assert r.status_code == 200, r.get_json()
    version = r.get_json()["version"]

    r = client.get(f"/api/v1/flows/{flow['id']}/versions/{version}/review", headers=owner_h)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    listed = {e["step"]: (e["idempotency"], e["label"]) for e in body["idempotency"]}
    assert listed["to_oms"] == ("key", "by key")
    assert listed["stock"] == ("upsert", "by upsert on sku")
    assert listed["log"][0] == "none" and "plain insert" in listed["log"][1]
    assert listed["mail"] == ("none", "none")
    guards = {g["step"]: g for g in body["guardrails"] if g["id"] == "idempotency"}
    assert guards["to_oms"]["status"] == "pass" and guards["stock"]["status"] == "pass"
    assert guards["log"]["status"] == "warn" and "natural key" in guards["log"]["message"]
    assert guards["mail"]["status"] == "warn" and "3 times" in guards["mail"]["message"]
    assert not any(g["id"] == "idempotency" for g in body["blocking"])

    spec = client.get("/api/v1/openapi.json").get_json()
    review_schema = spec["components"]["schemas"]["VersionReview"]
    assert "idempotency" in review_schema["properties"]
