"""Connections: config checked against the connector schema; secrets are write-only."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent, Connection


def create(client, headers, **overrides):
    body = {
        "name": "ERP",
        "connector": "http",
        "config": {"base_url": "https://erp.example.com", "auth": "basic", "username": "flowgate"},
        "secrets": {"password": "hunter2-very-secret"},
    }
    body.update(overrides)
    return client.post("/api/v1/connections", json=body, headers=headers)


def test_secrets_are_never_returned_and_are_encrypted_at_rest(client, make_user):
    _, headers = make_user("admin")
    response = create(client, headers)
    assert response.status_code == 201
    created = response.get_json()
    assert created["has_password"] is True
    assert created["has_token"] is False and created["has_api_key"] is False
    assert created["config"]["timeout_seconds"] == 10  # defaults are made explicit
    for url in ("/api/v1/connections", f"/api/v1/connections/{created['id']}"):
        text = client.get(url, headers=headers).get_data(as_text=True)
        assert "hunter2-very-secret" not in text
    row = db.session.get(Connection, created["id"])
    assert "hunter2" not in row.secrets_encrypted and row.secrets_encrypted
    audit = db.session.execute(select(AuditEvent)).scalars().all()
    assert "hunter2" not in json.dumps([a.detail for a in audit])


def test_sending_the_mask_back_keeps_the_secret_and_null_removes_it(client, make_user, app):
    from app.runtime import secret_box

    _, headers = make_user("admin")
    created = create(client, headers).get_json()
    url = f"/api/v1/connections/{created['id']}"
    kept = client.patch(
        url, json={"name": "ERP prod", "secrets": {"password": "********"}}, headers=headers
    )
    assert kept.status_code == 200 and kept.get_json()["has_password"] is True
    row = db.session.get(Connection, created["id"])
    assert secret_box(app).decrypt(row.secrets_encrypted) == {"password": "hunter2-very-secret"}
    removed = client.patch(url, json={"secrets": {"password": None}}, headers=headers)
    assert removed.get_json()["has_password"] is False


def test_config_problems_are_listed_with_paths(client, make_user):
    _, headers = make_user("admin")
    response = create(client, headers, config={"base_url": "ftp://x", "auth": "magic", "bogus": 1})
    assert response.status_code == 422
    paths = {p["path"] for p in response.get_json()["problems"]}
    assert {"/config/base_url", "/config/auth", "/config/bogus"} <= paths


def test_unknown_connector_and_unknown_secret_field_are_422(client, make_user):
    _, headers = make_user("admin")
    assert create(client, headers, connector="carrier-pigeon").status_code == 422
    bad = create(client, headers, secrets={"passwd": "x"})
    assert bad.status_code == 422 and bad.get_json()["problems"][0]["path"] == "/secrets/passwd"


def test_unknown_fields_in_the_body_are_refused(client, make_user):
    _, headers = make_user("admin")
    response = create(client, headers, colour="blue")
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert "colour" in response.get_json()["errors"]["json"]


def test_check_reaches_a_local_server(client, make_user, sink):
    _, headers = make_user("admin")
    created = create(
        client, headers, name="Sink", config={"base_url": sink.url}, secrets={}
    ).get_json()
    result = client.post(f"/api/v1/connections/{created['id']}/test", headers=headers).get_json()
    assert result["ok"] is True, result
    assert len(sink.requests) == 1


def test_blocked_address_is_refused_at_save(client, make_user, app):
    _, headers = make_user("admin")
    for url in (
        "http://169.254.169.254/latest",
        "http://10.0.0.1/",
        "http://[::ffff:169.254.169.254]/",
    ):
        response = create(client, headers, name=url, config={"base_url": url}, secrets={})
        assert response.status_code == 422, url
        assert response.get_json()["problems"][0]["path"] == "/config/base_url"
        assert "egress_blocked" in response.get_json()["problems"][0]["message"]
    app.config["FLOWGATE_EGRESS_ALLOW"] = []
    app.extensions.pop("flowgate.egress", None)
    local = create(client, headers, name="local", config={"base_url": "http://localhost:9/"})
    assert local.status_code == 422
    named = create(client, headers, name="named", config={"base_url": "https://erp.example.com"})
    assert named.status_code == 201  # names are checked when connecting, not guessed at save


def test_local_paths_must_be_under_the_file_roots(client, make_user, app, tmp_path):
    _, headers = make_user("admin")
    app.config["FLOWGATE_FILE_ROOTS"] = [str(tmp_path / "exports")]
    outside = create(
        client,
        headers,
        name="etc",
        connector="file",
        config={"transport": "local", "base_dir": "/etc"},
        secrets={},
    )
    assert outside.status_code == 422
    assert outside.get_json()["problems"][0]["path"] == "/config/base_dir"
    sneaky = create(
        client,
        headers,
        name="sneaky",
        connector="file",
        config={"transport": "local", "base_dir": str(tmp_path / "exports" / ".." / "x")},
        secrets={},
    )
    assert sneaky.status_code == 422
    inside = create(
        client,
        headers,
        name="exports",
        connector="file",
        config={"transport": "local", "base_dir": str(tmp_path / "exports" / "erp")},
        secrets={},
    )
    assert inside.status_code == 201, inside.get_json()
    own_db = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        app.config["FLOWGATE_FILE_ROOTS"] = [str(Path(own_db).parent)]
        ours = create(
            client,
            headers,
            name="ours",
            connector="sql",
            config={"dialect": "sqlite", "sqlite_path": own_db},
            secrets={},
        )
        assert ours.status_code == 422  # never Flowgate's own database
