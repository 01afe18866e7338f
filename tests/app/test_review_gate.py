"""Drafts, submission and the owner's decision; the author can never approve."""

from __future__ import annotations

from tests.app.test_walking_skeleton import definition
from tests.support.contracts import complete_contract
from tests.support.drafts import draft_flow, http_connection, submit


def setup_draft(client, make_user, sink):
    _, analyst_h = make_user("analyst")
    draft = draft_flow(client, analyst_h, http_connection(sink.url))
    return draft.flow, draft.connection, analyst_h, draft.saved


def test_author_cannot_approve_even_as_owner_and_another_owner_can(client, make_user, sink):
    _, author_h = make_user("owner")
    draft = draft_flow(client, author_h, http_connection(sink.url))
    flow, saved, base = draft.flow, draft.saved, draft.base
    submit(client, base, author_h)
    own = client.post(f"{base}/approve", json={"comment": "mine"}, headers=author_h)
    assert own.status_code == 403 and "author" in own.get_json()["detail"]
    _, other_h = make_user("owner")
    approved = client.post(f"{base}/approve", json={"comment": "looks right"}, headers=other_h)
    assert approved.status_code == 200
    assert approved.get_json()["status"] == "live"
    got = client.get(f"/api/v1/flows/{flow['id']}", headers=author_h).get_json()
    assert (
        got["live_version"] == saved["version"] and got["webhook_path"] == f"/hooks/{flow['slug']}"
    )


def test_analyst_and_admin_cannot_approve(client, make_user, sink):
    flow, _, analyst_h, saved = setup_draft(client, make_user, sink)
    base = f"/api/v1/flows/{flow['id']}/versions/{saved['version']}"
    client.post(f"{base}/submit", json={"contract": complete_contract()}, headers=analyst_h)
    _, other_analyst = make_user("analyst")
    _, admin = make_user("admin")
    assert client.post(f"{base}/approve", json={}, headers=other_analyst).status_code == 403
    assert client.post(f"{base}/approve", json={}, headers=admin).status_code == 403


def test_submitted_version_is_immutable_and_edit_starts_a_new_draft(client, make_user, sink):
    flow, connection, analyst_h, saved = setup_draft(client, make_user, sink)
    base = f"/api/v1/flows/{flow['id']}/versions/{saved['version']}"
    client.post(f"{base}/submit", json={"contract": complete_contract()}, headers=analyst_h)
    changed = definition(connection["id"])
    changed["steps"][0]["condition"] = "financial_status = 'pending'"
    again = client.put(
        f"/api/v1/flows/{flow['id']}/draft", json={"definition": changed}, headers=analyst_h
    ).get_json()
    assert again["version"] == saved["version"] + 1
    submitted = client.get(base, headers=analyst_h).get_json()
    assert submitted["status"] == "in_review"
    assert submitted["definition"]["steps"][0]["condition"] == "financial_status = 'paid'"
    assert (
        client.post(
            f"{base}/submit", json={"contract": complete_contract()}, headers=analyst_h
        ).status_code
        == 409
    )


def test_stale_revision_is_409(client, make_user, sink):
    flow, connection, analyst_h, saved = setup_draft(client, make_user, sink)
    doc = definition(connection["id"])
    url = f"/api/v1/flows/{flow['id']}/draft"
    ok = client.put(url, json={"definition": doc, "revision": saved["revision"]}, headers=analyst_h)
    assert ok.status_code == 200 and ok.get_json()["revision"] == saved["revision"] + 1
    stale = client.put(
        url, json={"definition": doc, "revision": saved["revision"]}, headers=analyst_h
    )
    assert stale.status_code == 409
    assert stale.get_json()["current_revision"] == saved["revision"] + 1


def test_layout_change_keeps_content_hash(client, make_user, sink):
    flow, connection, analyst_h, saved = setup_draft(client, make_user, sink)
    doc = definition(connection["id"])
    doc["layout"] = {"send_oms": {"x": 400, "y": 10}}
    moved = client.put(
        f"/api/v1/flows/{flow['id']}/draft", json={"definition": doc}, headers=analyst_h
    ).get_json()
    assert moved["content_hash"] == saved["content_hash"]


def test_invalid_jsonata_is_422_with_position(client, make_user, sink):
    flow, connection, analyst_h, _ = setup_draft(client, make_user, sink)
    doc = definition(connection["id"])
    doc["steps"][1]["expression"] = "$sum("
    response = client.put(
        f"/api/v1/flows/{flow['id']}/draft", json={"definition": doc}, headers=analyst_h
    )
    assert response.status_code == 422
    problem = response.get_json()["problems"][0]
    assert problem["path"] == "/steps/1/expression"
    assert problem["code"] == "invalid_expression"
    assert isinstance(problem["position"], int)


def test_reject_needs_a_comment_and_an_owner_who_is_not_the_author(client, make_user, sink):
    flow, _, analyst_h, saved = setup_draft(client, make_user, sink)
    base = f"/api/v1/flows/{flow['id']}/versions/{saved['version']}"
    client.post(f"{base}/submit", json={"contract": complete_contract()}, headers=analyst_h)
    _, owner_h = make_user("owner")
    assert client.post(f"{base}/reject", json={"comment": " "}, headers=owner_h).status_code == 422
    rejected = client.post(f"{base}/reject", json={"comment": "map the VAT"}, headers=owner_h)
    assert rejected.status_code == 200
    body = rejected.get_json()
    assert body["status"] == "rejected" and body["reviews"][0]["comment"] == "map the VAT"


def test_approving_retires_the_previous_live_version(client, make_user, sink):
    flow, connection, analyst_h, saved = setup_draft(client, make_user, sink)
    _, owner_h = make_user("owner")
    first = f"/api/v1/flows/{flow['id']}/versions/{saved['version']}"
    client.post(f"{first}/submit", json={"contract": complete_contract()}, headers=analyst_h)
    client.post(f"{first}/approve", json={}, headers=owner_h)
    second_doc = definition(connection["id"])
    second_doc["steps"][1]["expression"] = "{'orderRef': 'V2-' & $string(order_number)}"
    v2 = client.put(
        f"/api/v1/flows/{flow['id']}/draft", json={"definition": second_doc}, headers=analyst_h
    ).get_json()["version"]
    second = f"/api/v1/flows/{flow['id']}/versions/{v2}"
    client.post(f"{second}/submit", json={"contract": complete_contract()}, headers=analyst_h)
    client.post(f"{second}/approve", json={}, headers=owner_h)
    assert client.get(first, headers=analyst_h).get_json()["status"] == "retired"
    assert client.get(second, headers=analyst_h).get_json()["status"] == "live"
