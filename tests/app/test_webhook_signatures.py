"""Signed webhooks end to end: POST /hooks/<slug> with the secret in a webhook connection."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from app.extensions import db
from app.models import Run
from tests.app.test_intake import assert_problem, run_count
from tests.app.test_walking_skeleton import ORDER, definition
from tests.support.contracts import complete_contract

SECRET = "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"
OLD_SECRET = "shpss_previous_0a1b2c3d4e5f60718293"
BODY = json.dumps(ORDER, indent=2).encode("utf-8")  # the sender's bytes, not a re-serialisation


def sign(secret: str, data: bytes) -> bytes:
    return hmac.new(secret.encode(), data, hashlib.sha256).digest()


def shopify(secret: str, body: bytes = BODY) -> dict[str, str]:
    return {"X-Shopify-Hmac-Sha256": base64.b64encode(sign(secret, body)).decode()}


def github(secret: str, body: bytes = BODY) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + sign(secret, body).hex()}


def stripe(*secrets: str, body: bytes = BODY, t: int | None = None) -> dict[str, str]:
    t = int(time.time()) if t is None else t
    v1 = [f"v1={sign(s, f'{t}.'.encode() + body).hex()}" for s in secrets]
    return {"Stripe-Signature": ",".join([f"t={t}", *v1])}


def create_connection(client: Any, headers: dict[str, str], **data: Any) -> dict[str, Any]:
    response = client.post("/api/v1/connections", json=data, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def signed_flow(
    client: Any,
    make_user: Any,
    sink: Any,
    signature: dict[str, Any],
    secrets: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A live flow whose webhook trigger verifies ``signature`` with a webhook connection."""
    _, analyst_h = make_user("analyst")
    _, owner_h = make_user("owner")
    oms = create_connection(
        client,
        analyst_h,
        name="OMS",
        connector="http",
        config={"base_url": sink.url, "auth": "bearer"},
        secrets={"token": "s3cr3t-token"},
    )
    signing = create_connection(
        client,
        analyst_h,
        name="Shop webhooks",
        connector="webhook",
        secrets={"signing_secret": SECRET} if secrets is None else secrets,
    )
    doc = definition(oms["id"], signature=signature)
    doc["trigger"]["connection_id"] = signing["id"]
    flow = client.post("/api/v1/flows", json={"name": "Signed orders"}, headers=analyst_h)
    flow = flow.get_json()
    r = client.put(f"/api/v1/flows/{flow['id']}/draft", json={"definition": doc}, headers=analyst_h)
    assert r.status_code == 200, r.get_json()
    base = f"/api/v1/flows/{flow['id']}/versions/{r.get_json()['version']}"
    assert (
        client.post(
            f"{base}/submit", json={"contract": complete_contract()}, headers=analyst_h
        ).status_code
        == 200
    )
    r = client.post(f"{base}/approve", json={"comment": "ok"}, headers=owner_h)
    assert r.status_code == 200, r.get_json()
    return {
        "hook": f"/hooks/{flow['slug']}",
        "flow": flow,
        "connection": signing,
        "headers": analyst_h,
        "owner_headers": owner_h,
    }


def post(client: Any, hook: str, headers: dict[str, str], body: bytes = BODY, **kw: Any) -> Any:
    kw.setdefault("content_type", "application/json")
    return client.post(hook, data=body, headers=headers, **kw)


def assert_unauthorized(response: Any) -> dict[str, Any]:
    problem = assert_problem(response, 401)
    text = response.get_data(as_text=True)
    assert SECRET not in text and OLD_SECRET not in text
    return problem


# --- connections and validation ---


def test_a_webhook_connection_holds_write_only_signing_secrets(client, make_user):
    _, headers = make_user("analyst")
    created = create_connection(
        client,
        headers,
        name="Stripe",
        connector="webhook",
        secrets={"signing_secret": SECRET, "previous_signing_secret": OLD_SECRET},
    )
    assert created["has_signing_secret"] and created["has_previous_signing_secret"]
    assert created["connector"] == "webhook" and created["config"] == {}
    fetched = client.get(f"/api/v1/connections/{created['id']}", headers=headers)
    for response in (fetched, client.get("/api/v1/connections", headers=headers)):
        text = response.get_data(as_text=True)
        assert SECRET not in text and OLD_SECRET not in text
    test = client.post(f"/api/v1/connections/{created['id']}/test", headers=headers).get_json()
    assert test["ok"] is True
    bad = client.post(
        "/api/v1/connections",
        json={"name": "x", "connector": "webhook", "secrets": {"api_key": "k"}},
        headers=headers,
    )
    assert bad.status_code == 422


def _draft_problems(client, headers, doc) -> list[dict[str, Any]]:
    flow = client.post("/api/v1/flows", json={"name": "Draft"}, headers=headers).get_json()
    r = client.put(f"/api/v1/flows/{flow['id']}/draft", json={"definition": doc}, headers=headers)
    assert r.status_code == 422, r.get_json()
    return r.get_json()["problems"]


def test_a_signed_trigger_needs_a_webhook_connection(client, make_user, sink):
    _, headers = make_user("analyst")
    oms = create_connection(
        client, headers, name="OMS", connector="http", config={"base_url": sink.url}
    )
    doc = definition(oms["id"], signature={"scheme": "shopify"})
    problems = _draft_problems(client, headers, doc)
    assert [(p["path"], p["code"]) for p in problems] == [
        ("/trigger/connection_id", "missing_connection")
    ]
    doc["trigger"]["connection_id"] = oms["id"]  # an http connection is not a webhook one
    problems = _draft_problems(client, headers, doc)
    assert [(p["path"], p["code"]) for p in problems] == [
        ("/trigger/connection_id", "connection_mismatch")
    ]
    doc["trigger"]["connection_id"] = 999
    problems = _draft_problems(client, headers, doc)
    assert [(p["path"], p["code"]) for p in problems] == [
        ("/trigger/connection_id", "unknown_connection")
    ]
    doc["trigger"]["config"]["signature"] = {"scheme": "shopify", "secret": SECRET}
    doc["trigger"].pop("connection_id")
    problems = _draft_problems(client, headers, doc)
    assert ("/trigger/config/signature/secret", "invalid_config") in [
        (p["path"], p["code"]) for p in problems
    ]


# --- Shopify ---


@pytest.fixture
def shop(client, make_user, sink):
    return signed_flow(client, make_user, sink, {"scheme": "shopify"})


def test_shopify_signed_order_is_accepted(client, shop):
    response = post(client, shop["hook"], shopify(SECRET))
    assert response.status_code == 202, response.get_json()
    run = db.session.get(Run, response.get_json()["run_id"])
    assert run.payload == ORDER and run.business_key == "1001"
    assert run.payload_hash == hashlib.sha256(BODY).hexdigest()


def test_tampered_body_is_401_and_nothing_is_stored(client, shop):
    tampered = BODY.replace(b'"paid"', b'"refunded"')
    problem = assert_unauthorized(post(client, shop["hook"], shopify(SECRET), tampered))
    assert "X-Shopify-Hmac-Sha256" in problem["detail"]
    assert run_count() == 0


def test_missing_or_wrong_signature_is_401(client, shop):
    assert_unauthorized(post(client, shop["hook"], {}))
    assert_unauthorized(post(client, shop["hook"], shopify("someone-else")))
    assert_unauthorized(client.post(shop["hook"], json=ORDER))  # unsigned re-serialisation
    assert run_count() == 0


def test_unsigned_senders_learn_nothing_about_parsing_or_content_type(client, shop):
    assert_unauthorized(post(client, shop["hook"], {}, b'{"order": '))
    assert_unauthorized(post(client, shop["hook"], {}, BODY, content_type="text/plain"))
    # Signed, the same mistakes get their usual answers.
    bad_json = b'{"order": '
    assert_problem(post(client, shop["hook"], shopify(SECRET, bad_json), bad_json), 400)
    plain = post(client, shop["hook"], shopify(SECRET), BODY, content_type="text/plain")
    assert_problem(plain, 415)
    assert run_count() == 0


def test_unknown_flow_is_still_404_before_any_signature_check(client, shop):
    assert_problem(post(client, "/hooks/no-such-flow", {}), 404)


def test_a_connection_without_secret_fails_closed(client, make_user, sink):
    ctx = signed_flow(client, make_user, sink, {"scheme": "shopify"}, secrets={})
    # Signed with the empty key, which anyone can compute.
    problem = assert_unauthorized(post(client, ctx["hook"], shopify("")))
    assert "no signing secret" in problem["detail"]
    assert run_count() == 0


# --- GitHub and Stripe ---


def test_github_signature(client, make_user, sink):
    ctx = signed_flow(client, make_user, sink, {"scheme": "github"})
    assert post(client, ctx["hook"], github(SECRET)).status_code == 202
    assert_unauthorized(post(client, ctx["hook"], github(SECRET, BODY + b"\n")))
    assert_unauthorized(post(client, ctx["hook"], shopify(SECRET)))  # wrong header
    assert run_count() == 1


def test_stripe_signature_with_tolerance(client, make_user, sink):
    ctx = signed_flow(client, make_user, sink, {"scheme": "stripe"})
    response = post(client, ctx["hook"], stripe("endpoint-secret-being-rolled", SECRET))
    assert response.status_code == 202, response.get_json()
    stale = stripe(SECRET, t=int(time.time()) - 600)
    problem = assert_unauthorized(post(client, ctx["hook"], stale))
    assert "300 seconds" in problem["detail"]
    assert_unauthorized(post(client, ctx["hook"], stripe("wrong")))
    assert run_count() == 1


def test_generic_hmac_with_dedupe_header(client, make_user, sink):
    signature = {"scheme": "hmac_sha256", "header": "X-Acme-Signature", "encoding": "base64"}
    ctx = signed_flow(client, make_user, sink, signature)
    headers = {"X-Acme-Signature": base64.b64encode(sign(SECRET, BODY)).decode()}
    first = post(client, ctx["hook"], headers)
    assert first.status_code == 202, first.get_json()
    assert_unauthorized(post(client, ctx["hook"], {"X-Acme-Signature": sign(SECRET, BODY).hex()}))
    assert run_count() == 1


# --- rotation ---


def test_secret_rotation_through_the_connection(client, make_user, sink):
    ctx = signed_flow(client, make_user, sink, {"scheme": "shopify"})
    url = f"/api/v1/connections/{ctx['connection']['id']}"
    new_secret = "shpss_rotated_ffeeddccbbaa99887766"
    # Rotate: the new secret becomes current, the old one stays valid meanwhile.
    r = client.patch(
        url,
        json={"secrets": {"signing_secret": new_secret, "previous_signing_secret": SECRET}},
        headers=ctx["owner_headers"],  # changing a connection is for owners
    )
    assert r.status_code == 200, r.get_json()
    analyst_try = client.patch(url, json={"name": "renamed"}, headers=ctx["headers"])
    assert analyst_try.status_code == 403
    assert post(client, ctx["hook"], shopify(new_secret)).status_code == 202
    assert post(client, ctx["hook"], shopify(SECRET)).status_code == 202
    # Rotation done: the previous secret is dropped and stops working, no redeploy needed.
    r = client.patch(
        url, json={"secrets": {"previous_signing_secret": None}}, headers=ctx["owner_headers"]
    )
    assert r.status_code == 200
    again = BODY + b" "
    assert_unauthorized(post(client, ctx["hook"], shopify(SECRET, again), again))
    assert post(client, ctx["hook"], shopify(new_secret, again), again).status_code == 202
    assert run_count() == 3
