"""The integration contract (required to submit, diffed against live, guardrails), the
review thread, and who is notified of submissions and decisions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent, Connection, System
from app.services import outbox
from tests.app.test_walking_skeleton import definition
from tests.support.contracts import complete_contract
from tests.support.drafts import draft_flow, http_connection, submit_and_approve
from tests.support.smtp_server import SMTPTestServer


@pytest.fixture
def smtp(app: Any) -> Iterator[SMTPTestServer]:
    server = SMTPTestServer().start()
    app.config["FLOWGATE_SMTP_URL"] = f"smtp://127.0.0.1:{server.port}"
    yield server
    server.stop()


def setup(client: Any, make_user: Any, sink: Any) -> dict[str, Any]:
    analyst, analyst_h = make_user("analyst")
    owner, owner_h = make_user("owner")
    draft = draft_flow(client, analyst_h, http_connection(sink.url), connection_h=owner_h)
    return {
        "analyst": analyst,
        "analyst_h": analyst_h,
        "owner": owner,
        "owner_h": owner_h,
        "flow": draft.flow,
        "connection": draft.connection,
        "base": draft.base,
    }


def test_submit_without_a_contract_is_refused_with_the_missing_fields(client, make_user, sink):
    ctx = setup(client, make_user, sink)
    r = client.post(f"{ctx['base']}/submit", headers=ctx["analyst_h"])
    assert r.status_code == 422
    assert r.get_json()["missing"] == [""]
    partial = {"source_system_id": complete_contract()["source_system_id"], "trigger": "order"}
    r = client.put(f"{ctx['base']}/contract", json={"contract": partial}, headers=ctx["analyst_h"])
    assert r.status_code == 200, r.get_json()  # partial is fine while drafting
    r = client.post(f"{ctx['base']}/submit", headers=ctx["analyst_h"])
    assert r.status_code == 422
    missing = r.get_json()["missing"]
    assert "on_call" in missing and "sla" in missing and "business_owner_id" in missing
    assert "source_system_id" not in missing and "trigger" not in missing
    assert client.get(ctx["base"], headers=ctx["analyst_h"]).get_json()["status"] == "draft"
    r = client.post(
        f"{ctx['base']}/submit", json={"contract": complete_contract()}, headers=ctx["analyst_h"]
    )
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["contract"]["on_call"]["email"] == "oncall@example.test"


def test_contract_types_and_references_are_checked_while_drafting(client, make_user, sink):
    ctx = setup(client, make_user, sink)
    r = client.put(
        f"{ctx['base']}/contract",
        json={"contract": {"volume_per_day": "lots"}},
        headers=ctx["analyst_h"],
    )
    assert r.status_code == 422
    assert r.get_json()["contract_problems"][0]["path"] == "volume_per_day"
    r = client.put(
        f"{ctx['base']}/contract",
        json={"contract": complete_contract(source_system_id=9999, technical_owner_id=8888)},
        headers=ctx["analyst_h"],
    )
    assert r.status_code == 422
    messages = [p["message"] for p in r.get_json()["contract_problems"]]
    assert "system 9999 does not exist" in messages and "user 8888 does not exist" in messages


def test_submitted_contract_is_immutable(client, make_user, sink):
    ctx = setup(client, make_user, sink)
    assert (
        client.post(
            f"{ctx['base']}/submit",
            json={"contract": complete_contract()},
            headers=ctx["analyst_h"],
        ).status_code
        == 200
    )
    r = client.put(
        f"{ctx['base']}/contract",
        json={"contract": complete_contract(volume_per_day=1)},
        headers=ctx["analyst_h"],
    )
    assert r.status_code == 409


def go_live(client: Any, ctx: dict[str, Any], contract: dict[str, Any]) -> None:
    submit_and_approve(
        client, ctx["base"], ctx["analyst_h"], ctx["owner_h"], contract=contract, comment="ok"
    )


def test_new_draft_of_a_live_flow_starts_from_its_contract_and_review_diffs_it(
    client, make_user, sink
):
    ctx = setup(client, make_user, sink)
    go_live(client, ctx, complete_contract())
    doc = definition(ctx["connection"]["id"])
    r = client.put(
        f"/api/v1/flows/{ctx['flow']['id']}/draft",
        json={"definition": doc},
        headers=ctx["analyst_h"],
    )
    base2 = f"/api/v1/flows/{ctx['flow']['id']}/versions/{r.get_json()['version']}"
    draft = client.get(base2, headers=ctx["analyst_h"]).get_json()
    assert draft["contract"] == complete_contract()
    changed = complete_contract(volume_per_day=5000)
    destination = changed["destination_system_ids"][0]
    changed["fields"] = [
        *changed["fields"],
        {"destination_system_id": destination, "field": "email", "pii": True},
    ]
    r = client.post(f"{base2}/submit", json={"contract": changed}, headers=ctx["analyst_h"])
    assert r.status_code == 200, r.get_json()
    page = client.get(f"{base2}/review", headers=ctx["owner_h"]).get_json()
    diff = page["contract_diff"]
    assert diff["against_live"] is True and diff["changed"] is True
    assert diff["changes"] == [{"field": "volume_per_day", "old": 2000, "new": 5000}]
    assert diff["fields"]["added"] == [
        {"destination_system_id": destination, "field": "email", "pii": True}
    ]
    assert page["contract"]["volume_per_day"] == 5000


def _guards(page: dict[str, Any], gid: str) -> list[dict[str, Any]]:
    return [g for g in page["guardrails"] if g["id"] == gid]


def test_pii_to_an_undeclared_system_fails_and_blocks_approval(client, make_user, sink):
    ctx = setup(client, make_user, sink)
    contract = complete_contract()
    destination = contract["destination_system_ids"][0]
    contract["fields"].append({"destination_system_id": destination, "field": "email", "pii": True})
    # The delivery's connection points at a system the contract does not declare.
    erp = System(name="ERP", kind="erp")
    db.session.add(erp)
    db.session.commit()
    db.session.get(Connection, ctx["connection"]["id"]).system_id = erp.id
    db.session.commit()
    r = client.post(f"{ctx['base']}/submit", json={"contract": contract}, headers=ctx["analyst_h"])
    assert r.status_code == 200
    page = client.get(f"{ctx['base']}/review", headers=ctx["owner_h"]).get_json()
    pii = _guards(page, "pii_routing")
    assert [(g["status"], g["step"]) for g in pii] == [("fail", "send_oms")]
    assert "email" in pii[0]["message"] and "does not declare" in pii[0]["message"]
    assert page["approvable"] is False
    r = client.post(f"{ctx['base']}/approve", json={"comment": "ok"}, headers=ctx["owner_h"])
    assert r.status_code == 422 and "pii_routing" in r.get_json()["detail"]
    # Declared (the connection points at the contract's destination): it passes.
    db.session.get(Connection, ctx["connection"]["id"]).system_id = destination
    db.session.commit()
    page = client.get(f"{ctx['base']}/review", headers=ctx["owner_h"]).get_json()
    assert [g["status"] for g in _guards(page, "pii_routing")] == ["pass"]
    assert [g["status"] for g in _guards(page, "contract_owners")] == ["pass"]
    assert [g["status"] for g in _guards(page, "alert_route")] == ["pass"]
    r = client.post(f"{ctx['base']}/approve", json={"comment": "ok"}, headers=ctx["owner_h"])
    assert r.status_code == 200, r.get_json()


def test_alert_route_guardrail_warns_without_an_on_call_webhook(client, make_user, sink):
    ctx = setup(client, make_user, sink)
    contract = complete_contract(on_call={"name": "Ops", "email": "ops@example.test"})
    client.post(f"{ctx['base']}/submit", json={"contract": contract}, headers=ctx["analyst_h"])
    page = client.get(f"{ctx['base']}/review", headers=ctx["owner_h"]).get_json()
    (route,) = _guards(page, "alert_route")
    assert route["status"] == "warn" and "ops@example.test" in route["message"]
    assert page["approvable"] is True


def test_comments_thread_is_shared_and_audited(client, make_user, sink):
    ctx = setup(client, make_user, sink)
    url = f"{ctx['base']}/comments"
    r = client.post(url, json={"body": "Why the filter?"}, headers=ctx["owner_h"])
    assert r.status_code == 201
    r = client.post(url, json={"body": "Unpaid orders wait."}, headers=ctx["analyst_h"])
    assert r.status_code == 201
    assert client.post(url, json={"body": "   "}, headers=ctx["analyst_h"]).status_code == 422
    items = client.get(url, headers=ctx["analyst_h"]).get_json()["items"]
    assert [(c["author"]["email"], c["body"]) for c in items] == [
        (ctx["owner"].email, "Why the filter?"),
        (ctx["analyst"].email, "Unpaid orders wait."),
    ]
    page = client.get(f"{ctx['base']}/review", headers=ctx["owner_h"]).get_json()
    assert [c["body"] for c in page["comments"]] == ["Why the filter?", "Unpaid orders wait."]
    actions = db.session.execute(
        select(AuditEvent.action).where(AuditEvent.action == "flow.commented")
    ).all()
    assert len(actions) == 2


def test_reject_requires_a_comment(client, make_user, sink):
    ctx = setup(client, make_user, sink)
    client.post(
        f"{ctx['base']}/submit", json={"contract": complete_contract()}, headers=ctx["analyst_h"]
    )
    r = client.post(f"{ctx['base']}/reject", json={"comment": " "}, headers=ctx["owner_h"])
    assert r.status_code == 422
    r = client.post(f"{ctx['base']}/reject", json={"comment": "Add a test"}, headers=ctx["owner_h"])
    assert r.status_code == 200 and r.get_json()["status"] == "rejected"


def test_owners_are_notified_of_a_submission_and_the_author_of_the_decision(
    app, client, make_user, sink, smtp
):
    ctx = setup(client, make_user, sink)
    other_owner, other_h = make_user("owner")
    admin, admin_h = make_user("admin")
    app.config["FLOWGATE_NOTIFY_WEBHOOK_URL"] = f"{sink.url}/governance"
    r = client.post(
        f"{ctx['base']}/submit", json={"contract": complete_contract()}, headers=ctx["analyst_h"]
    )
    assert r.status_code == 200
    # In-app: both owners, not the analyst, not the admin.
    for headers in (ctx["owner_h"], other_h):
        mine = client.get("/api/v1/notifications", headers=headers).get_json()
        assert mine["unread"] == 1
        assert mine["items"][0]["kind"] == "review.submitted"
        assert mine["items"][0]["link"] == ctx["base"].replace("/api/v1/flows", "/reviews").replace(
            "/versions", ""
        )
    assert client.get("/api/v1/notifications", headers=ctx["analyst_h"]).get_json()["unread"] == 0
    assert client.get("/api/v1/notifications", headers=admin_h).get_json()["unread"] == 0
    # E-mail and webhook are queued with the submission, sent by the scheduler's outbox tick.
    assert smtp.messages == [] and [r for r in sink.requests if r.path == "/governance"] == []
    assert outbox.tick(app)["sent"] == 2
    # E-mail: one message to both owners.
    assert len(smtp.messages) == 1
    assert sorted(smtp.messages[0].rcpt_tos) == sorted([ctx["owner"].email, other_owner.email])
    assert "waiting for your review" in smtp.messages[0].message["Subject"]
    hooks = [r for r in sink.requests if r.path == "/governance"]
    assert hooks[0].json()["event"] == "review.submitted"

    r = client.post(f"{ctx['base']}/approve", json={"comment": "fine"}, headers=ctx["owner_h"])
    assert r.status_code == 200
    mine = client.get("/api/v1/notifications", headers=ctx["analyst_h"]).get_json()
    assert mine["unread"] == 1 and mine["items"][0]["kind"] == "review.approved"
    assert len(smtp.messages) == 1
    assert outbox.tick(app)["sent"] == 2
    assert smtp.messages[-1].rcpt_tos == [ctx["analyst"].email]
    assert "fine" in smtp.messages[-1].message.get_content()
    assert [r.json()["event"] for r in sink.requests if r.path == "/governance"] == [
        "review.submitted",
        "review.approved",
    ]
    # Read: the count drops; someone else's notification is not found.
    note = mine["items"][0]["id"]
    assert (
        client.post(f"/api/v1/notifications/{note}/read", headers=ctx["owner_h"]).status_code == 404
    )
    r = client.post(f"/api/v1/notifications/{note}/read", headers=ctx["analyst_h"])
    assert r.status_code == 200 and r.get_json()["read_at"] is not None
    assert client.get("/api/v1/notifications", headers=ctx["analyst_h"]).get_json()["unread"] == 0


def test_notification_failures_never_fail_the_governance_action(
    app, client, make_user, sink, caplog
):
    ctx = setup(client, make_user, sink)
    app.config["FLOWGATE_SMTP_URL"] = "smtp://127.0.0.1:9"  # nothing listens there
    app.config["FLOWGATE_NOTIFY_WEBHOOK_URL"] = "http://127.0.0.1:9/hook"
    r = client.post(
        f"{ctx['base']}/submit",
        json={"contract": complete_contract()},
        headers=ctx["analyst_h"],
    )
    assert r.status_code == 200
    with caplog.at_level("WARNING", logger="flowgate.notify"):
        assert outbox.tick(app)["retrying"] == 2
    assert "notify.email_failed" in caplog.text and "notify.webhook_failed" in caplog.text
    # The in-app notification still arrived.
    assert client.get("/api/v1/notifications", headers=ctx["owner_h"]).get_json()["unread"] == 1


def test_review_queue_lists_versions_in_review(client, make_user, sink):
    ctx = setup(client, make_user, sink)
    assert client.get("/api/v1/reviews", headers=ctx["analyst_h"]).get_json()["items"] == []
    client.post(
        f"{ctx['base']}/submit", json={"contract": complete_contract()}, headers=ctx["analyst_h"]
    )
    items = client.get("/api/v1/reviews", headers=ctx["analyst_h"]).get_json()["items"]
    assert [(i["flow_name"], i["status"], i["author"]["email"]) for i in items] == [
        ("Orders", "in_review", ctx["analyst"].email)
    ]


def test_admin_changes_a_role_audited_and_others_are_refused(client, make_user):
    admin, admin_h = make_user("admin")
    analyst, analyst_h = make_user("analyst")
    owner, owner_h = make_user("owner")
    url = f"/api/v1/users/{analyst.id}"
    assert client.patch(url, json={"role": "owner"}, headers=analyst_h).status_code == 403
    assert client.patch(url, json={"role": "owner"}, headers=owner_h).status_code == 403
    r = client.patch(url, json={"role": "owner"}, headers=admin_h)
    assert r.status_code == 200 and r.get_json()["role"] == "owner"
    event = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "user.role_changed")
    ).scalar_one()
    assert event.actor_id == admin.id
    assert event.detail["previous"] == "analyst" and event.detail["role"] == "owner"
    # No self-demotion (an installation must keep an admin).
    r = client.patch(f"/api/v1/users/{admin.id}", json={"role": "analyst"}, headers=admin_h)
    assert r.status_code == 403
    users = client.get("/api/v1/users", headers=analyst_h).get_json()["items"]
    assert {u["email"] for u in users} == {admin.email, analyst.email, owner.email}
    assert all("password_hash" not in u for u in users)


def test_demo_live_flow_has_a_complete_contract(app):
    from app.demo.seed import DEMO_FLOW_SLUG, seed_demo
    from app.models import Flow
    from app.services import contracts
    from app.services import review as review_service
    from flows import contract as rules

    assert seed_demo(app, "http://127.0.0.1:5000") is True
    flow = db.session.execute(select(Flow).where(Flow.slug == DEMO_FLOW_SLUG)).scalar_one()
    live = flow.versions[0]
    assert rules.problems(live.contract, complete=True) == []
    assert contracts.reference_problems(live.contract) == []
    found = {g["id"]: g["status"] for g in review_service.checks(live)["guardrails"]}
    assert found["contract"] == found["contract_owners"] == found["pii_routing"] == "pass"


def test_layout_of_the_live_version_changes_without_a_new_review(client, make_user, sink):
    ctx = setup(client, make_user, sink)
    go_live(client, ctx, complete_contract())
    url = f"{ctx['base']}/layout"
    r = client.put(
        url, json={"layout": {"send_oms": {"x": 500, "y": 80}}}, headers=ctx["analyst_h"]
    )
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["status"] == "live" and body["definition"]["layout"]["send_oms"]["x"] == 500
    flow = client.get(f"/api/v1/flows/{ctx['flow']['id']}", headers=ctx["analyst_h"]).get_json()
    assert flow["draft_version"] is None and flow["live_version"] == 1
    r = client.put(url, json={"layout": {"send_oms": {"x": "far"}}}, headers=ctx["analyst_h"])
    assert r.status_code == 422
    actions = db.session.execute(
        select(AuditEvent.action).where(AuditEvent.action == "flow.layout_changed")
    ).all()
    assert len(actions) == 1
