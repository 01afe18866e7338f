"""A canary secret, stored in connections and echoed back by the systems they talk to, never
appears anywhere Flowgate writes or answers (SQLite and PostgreSQL): logs, any stored row (runs,
steps, deliveries, dead letters, poll state, audit), any GET under /api/v1, flow exports.

The destinations here misbehave on purpose: the ERP answers 400 with our token in the body
(so the run is dead-lettered with that answer), the polled API answers 500 with it.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re
from typing import Any

from sqlalchemy import inspect, text

from app.extensions import db
from app.services.polling import fire_due_polls
from tests.support.live_flows import make_live_flow
from tests.support.paged_api import PagedApi
from tests.support.sink import Answer

CANARY = "canary-7f3a9c1e-do-not-leak"
SIGNING_CANARY = "canary-signing-55aa-do-not-leak"


def _every_stored_value() -> str:
    """Every row of every table as text (secrets_encrypted is ciphertext: it may stay)."""
    out = []
    engine = db.engine
    for table in inspect(engine).get_table_names():
        with engine.connect() as conn:
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                out.append(f"{table}: {json.dumps([str(v) for v in row])}")
    return "\n".join(out)


def _get_every_api_route(client: Any, headers: dict[str, str], ids: list[int]) -> str:
    """GET every /api/v1 route, int parameters filled with each known id."""
    bodies = []
    for rule in client.application.url_map.iter_rules():
        if "GET" not in rule.methods or not rule.rule.startswith("/api/v1"):
            continue
        params = list(rule.arguments)
        for value in ids if params else [None]:
            url = rule.rule
            for name in params:
                url = re.sub(rf"<(?:\w+:)?{name}>", str(value), url)
            response = client.get(url, headers=headers)
            bodies.append(f"{url} {response.status_code} {response.get_data(as_text=True)}")
    return "\n".join(bodies)


def test_a_canary_secret_never_leaks(app, client, make_user, sink, run_worker, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    _, analyst = make_user("analyst")
    _, admin = make_user("admin")
    # The ERP echoes our Authorization header back in its error answer.
    sink.default = Answer(
        status=400, body=json.dumps({"error": f"bad token Bearer {CANARY}"}).encode()
    )
    r = client.post(
        "/api/v1/connections",
        json={
            "name": "ERP",
            "connector": "http",
            "config": {"base_url": sink.url, "auth": "bearer"},
            "secrets": {"token": CANARY},
        },
        headers=analyst,
    )
    assert r.status_code == 201, r.get_json()
    erp = r.get_json()["id"]
    r = client.post(
        "/api/v1/connections",
        json={
            "name": "Shop hooks",
            "connector": "webhook",
            "config": {},
            "secrets": {"signing_secret": SIGNING_CANARY},
        },
        headers=analyst,
    )
    assert r.status_code == 201, r.get_json()
    hooks_connection = r.get_json()["id"]
    r = client.post(f"/api/v1/connections/{erp}/test", headers=analyst)
    assert r.status_code in (200, 201), r.get_data(as_text=True)

    flow, _ = make_live_flow(
        {
            "schema_version": 1,
            "trigger": {
                "type": "webhook",
                "connection_id": hooks_connection,
                "config": {"signature": {"scheme": "shopify"}},
            },
            "steps": [
                {
                    "id": "erp",
                    "type": "deliver",
                    "connector": "http",
                    "connection_id": erp,
                    "config": {"method": "POST", "path": "/orders"},
                }
            ],
            "edges": [{"from": "trigger", "to": "erp"}],
        },
        "Orders to ERP",
    )
    body = json.dumps({"order": 1}).encode()
    signature = base64.b64encode(
        hmac.new(SIGNING_CANARY.encode(), body, "sha256").digest()
    ).decode()
    tampered = client.post(
        f"/hooks/{flow.slug}",
        data=body + b" ",
        headers={"Content-Type": "application/json", "X-Shopify-Hmac-Sha256": signature},
    )
    assert tampered.status_code == 401
    signed = client.post(
        f"/hooks/{flow.slug}",
        data=body,
        headers={"Content-Type": "application/json", "X-Shopify-Hmac-Sha256": signature},
    )
    assert signed.status_code == 202, signed.get_json()
    run_worker()
    assert len(sink.requests) >= 1
    assert sink.requests[0].headers["Authorization"] == f"Bearer {CANARY}"  # it was used

    # A polled API that fails with our token in its answer.
    api = PagedApi().start()
    try:
        api.status = 500
        poll_connection = client.post(
            "/api/v1/connections",
            json={
                "name": "WMS stock",
                "connector": "poll_http",
                "config": {"base_url": api.url, "auth": "api_key"},
                "secrets": {"api_key": CANARY},
            },
            headers=analyst,
        ).get_json()["id"]
        make_live_flow(
            {
                "schema_version": 1,
                "trigger": {
                    "type": "poll_http",
                    "connection_id": poll_connection,
                    "config": {"path": "/stock"},
                },
                "steps": [
                    {
                        "id": "erp",
                        "type": "deliver",
                        "connector": "http",
                        "connection_id": erp,
                        "config": {"method": "POST", "path": "/stock"},
                    }
                ],
                "edges": [{"from": "trigger", "to": "erp"}],
            },
            "Stock poll",
        )
        assert fire_due_polls(app)["failed"] == 1
    finally:
        api.stop()

    db.session.expire_all()
    stored = _every_stored_value()
    assert "dead_lettered" in stored or "failed" in stored  # the failure was recorded...
    ids = sorted({flow.id, erp, poll_connection, hooks_connection, 1, 2, 3})
    answers = _get_every_api_route(client, admin, ids)
    export = app.test_cli_runner().invoke(args=["flows", "export", flow.slug]).output
    logs = caplog.text + "".join(capfd.readouterr())
    for where, content in {
        "database": stored,
        "api": answers,
        "export": export,
        "logs": logs,
    }.items():
        for canary in (CANARY, SIGNING_CANARY):
            assert canary not in content, f"{canary} leaked into {where}"
    assert "bad token" in stored  # ...with the destination's answer, masked
