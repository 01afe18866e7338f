"""Governance: withdraw, re-submit after rejection, rollback, and the hash-chained audit log."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select, text

from app.extensions import db
from app.models import AuditEvent
from app.models._types import JSONType
from app.models.audit import GENESIS_HASH
from app.services import audit
from tests.app.test_walking_skeleton import ORDER, definition, live_flow
from tests.support.contracts import complete_contract
from tests.support.drafts import draft_flow, http_connection, submit, submit_and_approve
from tests.support.migrations import MIGRATIONS, app_on_empty_database

V2_MAPPING = "{'orderRef': 'V2-' & $string(order_number)}"


def events(action: str | None = None) -> list[AuditEvent]:
    stmt = select(AuditEvent).order_by(AuditEvent.id)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    return list(db.session.execute(stmt).scalars())


def new_flow(client: Any, make_user: Any, sink: Any) -> dict[str, Any]:
    """A flow with a submitted version 1 authored by an analyst."""
    analyst, analyst_h = make_user("analyst")
    oms = http_connection(sink.url, name=f"OMS {analyst.id}")
    draft = draft_flow(client, analyst_h, oms)
    submit(client, draft.base, analyst_h)
    return {
        "flow": draft.flow,
        "connection": draft.connection,
        "analyst": analyst,
        "headers": analyst_h,
        "number": draft.number,
        "base": draft.base,
    }


def save(client: Any, flow_id: int, doc: dict[str, Any], headers: dict[str, str]) -> Any:
    return client.put(f"/api/v1/flows/{flow_id}/draft", json={"definition": doc}, headers=headers)


# --- withdraw -----------------------------------------------------------------------------


def test_author_withdraws_a_version_in_review_and_can_edit_it_again(client, make_user, sink):
    ctx = new_flow(client, make_user, sink)
    withdrawn = client.post(f"{ctx['base']}/withdraw", headers=ctx["headers"])
    assert withdrawn.status_code == 200, withdrawn.get_json()
    body = withdrawn.get_json()
    assert body["status"] == "draft" and body["submitted_at"] is None
    flow = client.get(f"/api/v1/flows/{ctx['flow']['id']}", headers=ctx["headers"]).get_json()
    assert flow["draft_version"] == ctx["number"]

    # It is the flow's draft again: the next save edits it instead of starting version 2.
    doc = definition(ctx["connection"]["id"])
    doc["steps"][1]["expression"] = V2_MAPPING
    again = save(client, ctx["flow"]["id"], doc, ctx["headers"]).get_json()
    assert again["version"] == ctx["number"]
    assert client.post(f"{ctx['base']}/submit", headers=ctx["headers"]).status_code == 200

    (event,) = events("flow.withdrawn")
    assert event.actor_id == ctx["analyst"].id
    assert event.detail == {"flow_id": ctx["flow"]["id"], "number": ctx["number"]}


def test_withdraw_is_refused_while_the_flow_has_another_draft(client, make_user, sink):
    ctx = new_flow(client, make_user, sink)
    doc = definition(ctx["connection"]["id"])
    doc["steps"][1]["expression"] = V2_MAPPING
    draft = save(client, ctx["flow"]["id"], doc, ctx["headers"]).get_json()
    assert draft["version"] == ctx["number"] + 1

    refused = client.post(f"{ctx['base']}/withdraw", headers=ctx["headers"])
    assert refused.status_code == 409
    problem = refused.get_json()
    assert problem["draft_version"] == draft["version"]
    assert f"already has a draft (version {draft['version']})" in problem["detail"]
    assert client.get(ctx["base"], headers=ctx["headers"]).get_json()["status"] == "in_review"
    assert events("flow.withdrawn") == []


def test_only_the_author_or_a_contributor_withdraws_and_only_in_review(client, make_user, sink):
    analyst, analyst_h = make_user("analyst")
    contributor, contributor_h = make_user("analyst")
    draft = draft_flow(client, analyst_h, http_connection(sink.url))
    flow, number, base = draft.flow, draft.number, draft.base
    doc = definition(draft.connection["id"])
    doc["steps"][1]["expression"] = V2_MAPPING
    assert save(client, flow["id"], doc, contributor_h).get_json()["version"] == number

    assert client.post(f"{base}/withdraw", headers=analyst_h).status_code == 409  # a draft
    submit(client, base, analyst_h)
    _, stranger_h = make_user("analyst")
    _, owner_h = make_user("owner")
    assert client.post(f"{base}/withdraw", headers=stranger_h).status_code == 403
    assert client.post(f"{base}/withdraw", headers=owner_h).status_code == 403
    ok = client.post(f"{base}/withdraw", headers=contributor_h)
    assert ok.status_code == 200 and ok.get_json()["status"] == "draft"

    submit(client, base, analyst_h)
    assert client.post(f"{base}/approve", json={}, headers=owner_h).status_code == 200
    live = client.post(f"{base}/withdraw", headers=analyst_h)
    assert live.status_code == 409 and "live" in live.get_json()["detail"]
    missing = client.post(f"/api/v1/flows/{flow['id']}/versions/99/withdraw", headers=analyst_h)
    assert missing.status_code == 404


def test_a_rejected_version_is_the_base_of_a_resubmission(client, make_user, sink):
    ctx = new_flow(client, make_user, sink)
    _, owner_h = make_user("owner")
    rejected = client.post(
        f"{ctx['base']}/reject", json={"comment": "prefix the order ref"}, headers=owner_h
    )
    assert rejected.status_code == 200
    base_doc = rejected.get_json()["definition"]
    assert client.post(f"{ctx['base']}/withdraw", headers=ctx["headers"]).status_code == 409

    base_doc["steps"][1]["expression"] = V2_MAPPING
    resubmitted = save(client, ctx["flow"]["id"], base_doc, ctx["headers"])
    assert resubmitted.status_code == 200
    number = resubmitted.get_json()["version"]
    assert number == ctx["number"] + 1
    new_base = f"/api/v1/flows/{ctx['flow']['id']}/versions/{number}"
    submit(client, new_base, ctx["headers"])
    approved = client.post(f"{new_base}/approve", json={"comment": "ok"}, headers=owner_h)
    assert approved.status_code == 200 and approved.get_json()["status"] == "live"
    old = client.get(ctx["base"], headers=ctx["headers"]).get_json()
    assert old["status"] == "rejected" and old["reviews"][0]["comment"] == "prefix the order ref"


# --- rollback -----------------------------------------------------------------------------


def second_live_version(client: Any, ctx: dict[str, Any]) -> int:
    """Approve a version 2 (orderRef 'V2-…') over the walking skeleton's version 1."""
    flow_id = ctx["flow"]["id"]
    v1 = client.get(f"/api/v1/flows/{flow_id}/versions/1", headers=ctx["headers"]).get_json()
    doc = v1["definition"]
    doc["steps"][1]["expression"] = V2_MAPPING
    number = save(client, flow_id, doc, ctx["headers"]).get_json()["version"]
    base = f"/api/v1/flows/{flow_id}/versions/{number}"
    submit_and_approve(client, base, ctx["headers"], ctx["owner_headers"])
    return number


def test_owner_rolls_back_and_the_webhook_runs_the_earlier_version(
    client, make_user, sink, run_worker
):
    ctx = live_flow(client, make_user, sink)
    flow_id, slug = ctx["flow"]["id"], ctx["flow"]["slug"]
    v2 = second_live_version(client, ctx)
    assert client.post(f"/hooks/{slug}", json=ORDER).status_code == 202
    run_worker()
    assert sink.requests[-1].json() == {"orderRef": "V2-1001"}

    _, rollback_owner_h = make_user("owner")
    rolled = client.post(
        f"/api/v1/flows/{flow_id}/versions/1/rollback",
        json={"comment": "V2 refs break the OMS"},
        headers=rollback_owner_h,
    )
    assert rolled.status_code == 200, rolled.get_json()
    body = rolled.get_json()
    assert body["from_version"] == v2 and body["to_version"] == 1
    assert body["version"]["status"] == "live" and body["version"]["number"] == 1
    assert len(body["version"]["reviews"]) == 1  # no new review
    flow = client.get(f"/api/v1/flows/{flow_id}", headers=ctx["headers"]).get_json()
    assert flow["live_version"] == 1
    assert {v["number"]: v["status"] for v in flow["versions"]} == {1: "live", v2: "retired"}

    accepted = client.post(f"/hooks/{slug}", json=ORDER)
    assert accepted.status_code == 202
    run_worker()
    assert sink.requests[-1].json()["orderRef"] == "WEB-1001"
    run = client.get(f"/api/v1/runs/{accepted.get_json()['run_id']}", headers=ctx["headers"])
    assert run.get_json()["status"] == "succeeded" and run.get_json()["flow_version"] == 1

    (event,) = events("flow.rolled_back")
    assert event.detail["from"] == v2 and event.detail["to"] == 1
    assert event.detail["comment"] == "V2 refs break the OMS"
    # And forward again, to the retired version 2, without a body.
    forward = client.post(
        f"/api/v1/flows/{flow_id}/versions/{v2}/rollback", headers=ctx["owner_headers"]
    )
    assert forward.status_code == 200 and forward.get_json()["from_version"] == 1


def test_analyst_and_admin_cannot_roll_back(client, make_user, sink):
    ctx = live_flow(client, make_user, sink)
    second_live_version(client, ctx)
    url = f"/api/v1/flows/{ctx['flow']['id']}/versions/1/rollback"
    _, admin_h = make_user("admin")
    assert client.post(url, json={}, headers=ctx["headers"]).status_code == 403
    assert client.post(url, json={}, headers=admin_h).status_code == 403
    flow = client.get(f"/api/v1/flows/{ctx['flow']['id']}", headers=admin_h).get_json()
    assert flow["live_version"] == 2
    assert events("flow.rolled_back") == []


def test_rollback_target_must_have_been_approved(client, make_user, sink):
    ctx = live_flow(client, make_user, sink)
    flow_id = ctx["flow"]["id"]
    owner_h = ctx["owner_headers"]
    live = client.post(f"/api/v1/flows/{flow_id}/versions/1/rollback", json={}, headers=owner_h)
    assert live.status_code == 409 and "already live" in live.get_json()["detail"]
    v1 = client.get(f"/api/v1/flows/{flow_id}/versions/1", headers=owner_h).get_json()
    number = save(client, flow_id, v1["definition"] | {"layout": {}}, ctx["headers"]).get_json()
    url = f"/api/v1/flows/{flow_id}/versions/{number['version']}"
    assert client.post(f"{url}/rollback", json={}, headers=owner_h).status_code == 409  # draft
    client.post(f"{url}/submit", json={"contract": complete_contract()}, headers=ctx["headers"])
    assert client.post(f"{url}/rollback", json={}, headers=owner_h).status_code == 409  # review
    client.post(f"{url}/reject", json={"comment": "no"}, headers=owner_h)
    rejected = client.post(f"{url}/rollback", json={}, headers=owner_h)
    assert rejected.status_code == 409 and "approved before" in rejected.get_json()["detail"]
    missing = client.post(f"/api/v1/flows/{flow_id}/versions/42/rollback", headers=owner_h)
    assert missing.status_code == 404


def test_webhook_keeps_answering_during_rollbacks(client, app, make_user, sink):
    ctx = live_flow(client, make_user, sink)
    flow_id, slug = ctx["flow"]["id"], ctx["flow"]["slug"]
    v2 = second_live_version(client, ctx)
    statuses: list[int] = []
    done = threading.Event()

    def post_orders() -> None:
        hooks = app.test_client()
        while not done.is_set():
            statuses.append(hooks.post(f"/hooks/{slug}", json=ORDER).status_code)

    sender = threading.Thread(target=post_orders)
    sender.start()
    try:
        for target in [1, v2] * 5:
            url = f"/api/v1/flows/{flow_id}/versions/{target}/rollback"
            assert client.post(url, json={}, headers=ctx["owner_headers"]).status_code == 200
    finally:
        done.set()
        sender.join(30)
    assert statuses and set(statuses) == {202}, statuses
    assert len(events("flow.rolled_back")) == 10


# --- the audit chain ----------------------------------------------------------------------


def verify_cli(app: Any) -> Any:
    return app.test_cli_runner().invoke(args=["audit", "verify"])


def test_chain_verifies_after_a_series_of_governance_events(client, app, make_user, sink):
    ctx = live_flow(client, make_user, sink)
    second_live_version(client, ctx)
    client.post(
        f"/api/v1/flows/{ctx['flow']['id']}/versions/1/rollback",
        json={},
        headers=ctx["owner_headers"],
    )
    other = new_flow(client, make_user, sink)
    client.post(f"{other['base']}/withdraw", headers=other["headers"])
    client.post("/api/v1/auth/login", json={"email": "nobody@example.test", "password": "x" * 9})
    user, _ = make_user("analyst")
    assert app.test_cli_runner().invoke(args=["users", "role", user.email, "owner"]).exit_code == 0

    rows = events()
    assert {"flow.approved", "flow.rolled_back", "flow.withdrawn", "user.login_failed"} <= {
        r.action for r in rows
    }
    assert rows[0].prev_hash == GENESIS_HASH
    for before, after in zip(rows, rows[1:], strict=False):
        assert after.prev_hash == before.hash
    assert all(audit.event_hash(r) == r.hash for r in rows)

    result = verify_cli(app)
    assert result.exit_code == 0, result.output
    assert f"OK: {len(rows)} audit events" in result.output
    _, owner_h = make_user("owner")
    report = client.get("/api/v1/audit/verify", headers=owner_h).get_json()
    assert report == {"ok": True, "checked": len(events()), "first_broken_id": None}
    assert len(events()) == len(rows) + 1  # the owner's user.created


def test_tampering_with_a_row_is_reported_by_cli_and_api(client, app, make_user, sink):
    ctx = new_flow(client, make_user, sink)
    client.post(f"{ctx['base']}/withdraw", headers=ctx["headers"])
    _, owner_h = make_user("owner")
    assert verify_cli(app).exit_code == 0
    (victim,) = events("flow.withdrawn")
    victim_id = victim.id
    db.session.execute(
        text("UPDATE audit_events SET detail = '{\"number\": 99}' WHERE id = :id"),
        {"id": victim_id},
    )
    db.session.commit()

    result = verify_cli(app)
    assert result.exit_code == 1
    assert f"audit event {victim_id} " in result.output
    report = client.get("/api/v1/audit/verify", headers=owner_h).get_json()
    assert report["ok"] is False and report["first_broken_id"] == victim_id
    assert report["checked"] == len([r for r in events() if r.id <= victim_id])


def test_a_removed_row_breaks_the_link_after_it(client, app, make_user):
    make_user("analyst")
    make_user("analyst")
    make_user("analyst")
    rows = events()
    db.session.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": rows[1].id})
    db.session.commit()
    result = verify_cli(app)
    assert result.exit_code == 1 and f"audit event {rows[2].id} " in result.output


def test_orm_refuses_to_change_an_event(app, make_user):
    make_user("analyst")
    (event,) = events()
    event.detail = {"changed": True}
    with pytest.raises(PermissionError):
        db.session.commit()
    db.session.rollback()


def test_concurrent_appends_keep_one_chain(app, make_user):
    threads, per_thread = 8, 10
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def append(n: int) -> None:
        try:
            with app.app_context():
                barrier.wait(10)
                for i in range(per_thread):
                    # Two events per transaction, so appenders overlap inside transactions.
                    audit.record(None, "test.appended", "thread", n, i=i, part=1)
                    audit.record(None, "test.appended", "thread", n, i=i, part=2)
                    db.session.commit()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=append, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert not errors, errors
    db.session.expire_all()
    rows = events("test.appended")
    assert len(rows) == threads * per_thread * 2
    report = audit.verify_chain(batch_size=7)  # several pages
    assert report.ok and report.checked == threads * per_thread * 2
    heads = db.session.execute(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.prev_hash == GENESIS_HASH)
    ).scalar_one()
    assert heads == 1
    # Each transaction's two events are adjacent: nobody appended between them.
    for first, second in zip(rows[::2], rows[1::2], strict=True):
        assert (first.detail["part"], second.detail["part"]) == (1, 2)
        assert second.prev_hash == first.hash and first.object_id == second.object_id


def test_detail_numbers_hash_the_same_after_a_round_trip(app):
    audit.record(None, "test.numbers", "x", None, whole=1000.0, big=1e20, tiny=1e-7, pi=3.14159)
    db.session.commit()
    db.session.expire_all()
    assert audit.verify_chain().ok


# --- reading the log ----------------------------------------------------------------------


def test_audit_log_is_for_owners_and_admins_with_filters(client, make_user, sink):
    ctx = new_flow(client, make_user, sink)
    client.post(f"{ctx['base']}/withdraw", headers=ctx["headers"])
    owner, owner_h = make_user("owner")
    _, admin_h = make_user("admin")
    assert client.get("/api/v1/audit", headers=ctx["headers"]).status_code == 403
    assert client.get("/api/v1/audit/verify", headers=ctx["headers"]).status_code == 403
    assert client.get("/api/v1/audit").status_code == 401

    everything = client.get("/api/v1/audit", headers=admin_h).get_json()
    assert everything["total"] == len(events())
    ids = [e["id"] for e in everything["items"]]
    assert ids == sorted(ids, reverse=True)
    assert set(everything["items"][0]) >= {"prev_hash", "hash", "actor_label", "detail"}

    withdrawn = client.get("/api/v1/audit?action=flow.withdrawn", headers=owner_h).get_json()
    assert withdrawn["total"] == 1
    item = withdrawn["items"][0]
    assert item["actor_id"] == ctx["analyst"].id and item["object_type"] == "flow_version"
    by_actor = client.get(f"/api/v1/audit?actor={ctx['analyst'].id}", headers=owner_h).get_json()
    by_label = client.get(
        f"/api/v1/audit?actor={ctx['analyst'].email.upper()}", headers=owner_h
    ).get_json()
    assert by_actor["total"] == by_label["total"] >= 4  # connection, flow, draft, submit, …
    by_object = client.get(
        f"/api/v1/audit?object_type=flow&object_id={ctx['flow']['id']}", headers=owner_h
    ).get_json()
    assert [e["action"] for e in by_object["items"]] == ["flow.created"]

    created = item["created_at"]
    assert client.get(f"/api/v1/audit?since={created}", headers=owner_h).get_json()["total"] >= 1
    later = client.get(f"/api/v1/audit?until={created}", headers=owner_h).get_json()
    assert all(e["id"] < item["id"] for e in later["items"])
    page = client.get("/api/v1/audit?limit=2&offset=1", headers=owner_h).get_json()
    assert [e["id"] for e in page["items"]] == ids[1:3] and page["total"] == len(ids)
    assert client.get("/api/v1/audit?limit=0", headers=owner_h).status_code == 422
    assert owner.role == "owner"


def test_login_failure_and_role_change_are_audited(client, app, make_user):
    user, _ = make_user("analyst")
    bad = client.post("/api/v1/auth/login", json={"email": user.email, "password": "wrong-pass"})
    assert bad.status_code == 401
    (failed,) = events("user.login_failed")
    assert failed.object_id == str(user.id)

    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "role", user.email, "owner"])
    assert result.exit_code == 0 and "analyst -> owner" in result.output
    (changed,) = events("user.role_changed")
    assert changed.object_id == str(user.id)
    assert changed.detail["previous"] == "analyst" and changed.detail["role"] == "owner"
    db.session.expire_all()
    assert user.role == "owner"
    assert runner.invoke(args=["users", "role", user.email, "owner"]).exit_code == 0
    assert len(events("user.role_changed")) == 1  # no change, no event
    assert runner.invoke(args=["users", "role", "nobody@example.test", "owner"]).exit_code != 0
    assert runner.invoke(args=["users", "role", user.email, "root"]).exit_code != 0
    assert verify_cli(app).exit_code == 0


# --- the migration ------------------------------------------------------------------------


def test_migration_chains_existing_events(database_url, tmp_path):
    """An installation upgraded from 0003 with audit rows verifies; downgrade works too."""
    from flask_migrate import downgrade, upgrade

    with app_on_empty_database(database_url, tmp_path):
        upgrade(directory=MIGRATIONS, revision="0003_connection_limits")
        old_events = sa.table(
            "audit_events",
            *(sa.column(c) for c in ("actor_label", "action", "object_type", "object_id")),
            sa.column("detail", JSONType),
            sa.column("created_at", sa.DateTime()),
        )
        details = [{"n": 1}, {"f": 2.0, "s": "été"}, {}]
        with db.engine.begin() as conn:
            conn.execute(
                old_events.insert(),
                [
                    {
                        "actor_label": "system",
                        "action": "old.event",
                        "object_type": "flow",
                        "object_id": str(i),
                        "detail": detail,
                        "created_at": datetime(2026, 1, i + 1, 10, 0, 0, 123456 * i),
                    }
                    for i, detail in enumerate(details)
                ],
            )
        upgrade(directory=MIGRATIONS, revision="heads")
        report = audit.verify_chain()
        assert report.ok and report.checked == 3
        audit.record(None, "new.event", "flow", None)
        db.session.commit()
        assert audit.verify_chain().checked == 4
        db.session.remove()
        downgrade(directory=MIGRATIONS, revision="0003_connection_limits")
        upgrade(directory=MIGRATIONS, revision="heads")
        assert audit.verify_chain() == audit.ChainReport(True, 4, None)
