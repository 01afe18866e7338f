"""Alerts end to end in-process: a failing destination opens one alert routed to the flow's
technical owner (real SMTP server, real chat webhook sink), escalates to on-call, resolves
when the destination recovers, and records MTTD/MTTR."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from app.extensions import db
from app.models import Alert, AlertNotification, AuditEvent, Connection, Notification, Run, System
from app.models._types import utcnow
from app.services import alerts
from tests.app.test_execution import post_order
from tests.app.test_walking_skeleton import ORDER, definition
from tests.support.contracts import complete_contract
from tests.support.sink import Answer, Sink
from tests.support.smtp_server import SMTPTestServer

ALWAYS_OPEN = {"timezone": "UTC", "days": [0, 1, 2, 3, 4, 5, 6], "start": "00:00", "end": "24:00"}


def alert_flow(
    app: Any,
    client: Any,
    make_user: Any,
    sink: Any,
    smtp: SMTPTestServer,
    chat: Sink,
    **contract: Any,
) -> dict[str, Any]:
    """A live flow to ``sink`` whose connection belongs to the system "Test OMS", with a
    contract naming a technical owner and an on-call contact; SMTP and chat configured."""
    analyst, analyst_h = make_user("analyst")
    owner, owner_h = make_user("owner", "tech.owner@example.test")
    reviewer, reviewer_h = make_user("owner")
    r = client.post(
        "/api/v1/connections",
        json={"name": "OMS API", "connector": "http", "config": {"base_url": sink.url}},
        headers=analyst_h,
    )
    assert r.status_code == 201, r.get_json()
    connection_id = r.get_json()["id"]
    flow = client.post("/api/v1/flows", json={"name": "Orders to OMS"}, headers=analyst_h)
    flow = flow.get_json()
    doc = definition(connection_id)
    r = client.put(f"/api/v1/flows/{flow['id']}/draft", json={"definition": doc}, headers=analyst_h)
    assert r.status_code == 200, r.get_json()
    terms = complete_contract(
        technical_owner_id=owner.id,
        on_call={
            "name": "On call",
            "email": "oncall@example.test",
            "webhook_url": chat.url + "/oncall",
        },
        **contract,
    )
    base = f"/api/v1/flows/{flow['id']}/versions/{r.get_json()['version']}"
    r = client.post(f"{base}/submit", json={"contract": terms}, headers=analyst_h)
    assert r.status_code == 200, r.get_json()
    r = client.post(f"{base}/approve", json={}, headers=reviewer_h)
    assert r.status_code == 200, r.get_json()
    oms = db.session.execute(select(System).where(System.name == "Test OMS")).scalar_one()
    db.session.execute(update(Connection).values(system_id=oms.id))
    db.session.commit()
    # Only now: the review gate's own e-mails are not what these tests count.
    app.config["FLOWGATE_SMTP_URL"] = f"smtp://127.0.0.1:{smtp.port}"
    app.config["FLOWGATE_ALERT_WEBHOOK_URL"] = chat.url + "/chat"
    return {
        "flow": flow,
        "headers": analyst_h,
        "owner": owner,
        "owner_headers": owner_h,
        "reviewer_headers": reviewer_h,
        "connection_id": connection_id,
    }


def fail_orders(client: Any, ctx: dict[str, Any], sink: Sink, run_worker: Any, n: int = 3) -> None:
    sink.default = Answer(status=503, body=b'{"error": "OMS maintenance"}')
    for i in range(n):
        post_order(client, ctx, dict(ORDER, order_number=2000 + i))
    run_worker()


def active(flow_id: int) -> list[Alert]:
    db.session.expire_all()
    return list(
        db.session.execute(
            select(Alert).where(Alert.flow_id == flow_id, Alert.state != "resolved")
        ).scalars()
    )


def test_failing_destination_alerts_the_owner_once_by_email_webhook_and_in_app(
    app, client, make_user, sink, smtp, chat, run_worker
):
    ctx = alert_flow(app, client, make_user, sink, smtp, chat)
    fail_orders(client, ctx, sink, run_worker)

    assert alerts.evaluate(app)["opened"] == 1
    [alert] = active(ctx["flow"]["id"])
    assert alert.kind == "consecutive_failures" and alert.state == "open"
    assert alert.system_name == "Test OMS"
    assert "503" in alert.last_error
    assert alert.run_id is not None and alert.first_failure_at <= alert.opened_at
    assert "Orders to OMS" in alert.summary and "Test OMS" in alert.summary

    [mail] = smtp.messages
    assert mail.rcpt_tos == ["tech.owner@example.test"]
    text = mail.message.get_content()
    subject = mail.message["Subject"]
    assert "Orders to OMS" in subject and "Test OMS" in subject
    assert "503" in text and f"/alerts/{alert.id}" in text and f"/runs/{alert.run_id}" in text

    [hook] = [r for r in chat.requests if r.path == "/chat"]
    body = hook.json()
    assert body["event"] == "alert.opened"
    assert body["alert"]["flow"]["name"] == "Orders to OMS"
    assert body["alert"]["system"] == "Test OMS" and "503" in body["alert"]["error"]
    assert "Orders to OMS" in body["text"] and "Test OMS" in body["text"]

    inbox = db.session.execute(
        select(Notification).where(Notification.user_id == ctx["owner"].id)
    ).scalars()
    assert [n.link for n in inbox if n.kind == "alert.opened"] == [f"/alerts/{alert.id}"]
    log = {n.channel: n for n in alert.notifications}
    assert set(log) == {"email", "webhook", "in_app"} and all(n.ok for n in log.values())
    assert "/chat" not in log["webhook"].recipient  # a chat URL's path is its secret

    # The condition persists: same alert, nothing sent twice.
    assert alerts.evaluate(app) == {"opened": 0, "escalated": 0, "resolved": 0}
    assert len(smtp.messages) == 1 and len(active(ctx["flow"]["id"])) == 1


def test_recovery_resolves_the_alert_and_records_mttd_and_mttr(
    app, client, make_user, sink, smtp, chat, run_worker
):
    ctx = alert_flow(app, client, make_user, sink, smtp, chat)
    fail_orders(client, ctx, sink, run_worker)
    alerts.evaluate(app)
    sink.default = Answer(status=201)
    post_order(client, ctx, dict(ORDER, order_number=3000))
    run_worker()

    assert alerts.evaluate(app)["resolved"] == 1
    assert active(ctx["flow"]["id"]) == []
    r = client.get(f"/api/v1/flows/{ctx['flow']['id']}/reliability", headers=ctx["headers"])
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["alerts"] == 1 and body["open"] == []
    assert body["mttd_seconds_last"] is not None and body["mttd_seconds_last"] >= 0
    assert body["mttr_seconds_last"] is not None and body["mttr_seconds_avg"] is not None
    [resolved] = client.get("/api/v1/alerts?state=resolved", headers=ctx["headers"]).get_json()[
        "items"
    ]
    assert resolved["resolution"] == "auto" and resolved["mttr_seconds"] is not None
    assert [m.message["Subject"].startswith("[Flowgate] Resolved") for m in smtp.messages] == [
        False,
        True,
    ]


def test_unacknowledged_alert_escalates_to_on_call_once(
    app, client, make_user, sink, smtp, chat, run_worker
):
    ctx = alert_flow(app, client, make_user, sink, smtp, chat)
    fail_orders(client, ctx, sink, run_worker)
    alerts.evaluate(app)
    assert alerts.evaluate(app, utcnow() + timedelta(minutes=14))["escalated"] == 0
    assert alerts.evaluate(app, utcnow() + timedelta(minutes=16))["escalated"] == 1
    assert alerts.evaluate(app, utcnow() + timedelta(minutes=17))["escalated"] == 0
    on_call = [m for m in smtp.messages if m.rcpt_tos == ["oncall@example.test"]]
    assert len(on_call) == 1 and "on-call" in on_call[0].message.get_content()
    [page] = [r for r in chat.requests if r.path == "/oncall"]
    assert page.json()["event"] == "alert.escalated"


def test_acknowledged_alert_does_not_escalate(app, client, make_user, sink, smtp, chat, run_worker):
    ctx = alert_flow(app, client, make_user, sink, smtp, chat)
    fail_orders(client, ctx, sink, run_worker)
    alerts.evaluate(app)
    [alert] = active(ctx["flow"]["id"])
    r = client.post(f"/api/v1/alerts/{alert.id}/acknowledge", headers=ctx["owner_headers"])
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["acknowledged_by"] == "tech.owner@example.test"
    db.session.rollback()
    assert alerts.evaluate(app, utcnow() + timedelta(minutes=30))["escalated"] == 0
    assert not [m for m in smtp.messages if m.rcpt_tos == ["oncall@example.test"]]


def test_owners_acknowledge_and_resolve_analysts_read(
    app, client, make_user, sink, smtp, chat, run_worker
):
    ctx = alert_flow(app, client, make_user, sink, smtp, chat)
    fail_orders(client, ctx, sink, run_worker)
    alerts.evaluate(app)
    [alert] = active(ctx["flow"]["id"])
    url = f"/api/v1/alerts/{alert.id}"
    listed = client.get("/api/v1/alerts?state=open", headers=ctx["headers"]).get_json()
    assert [a["id"] for a in listed["items"]] == [alert.id]
    detail = client.get(url, headers=ctx["headers"]).get_json()
    assert detail["system"] == "Test OMS" and detail["run_id"] == alert.run_id
    assert {n["channel"] for n in detail["notifications"]} == {"email", "webhook", "in_app"}
    assert client.post(f"{url}/acknowledge", headers=ctx["headers"]).status_code == 403
    assert client.post(f"{url}/acknowledge", headers=ctx["owner_headers"]).status_code == 200
    r = client.post(f"{url}/acknowledge", headers=ctx["owner_headers"])
    assert r.status_code == 409 and r.content_type == "application/problem+json"
    r = client.post(f"{url}/resolve", headers=ctx["owner_headers"])
    assert r.status_code == 200 and r.get_json()["resolution"] == "manual"
    assert client.post(f"{url}/resolve", headers=ctx["owner_headers"]).status_code == 409
    assert client.get("/api/v1/alerts/999999", headers=ctx["headers"]).status_code == 404
    assert client.get("/api/v1/alerts?state=bogus", headers=ctx["headers"]).status_code == 422
    db.session.rollback()
    actions = set(
        db.session.execute(
            select(AuditEvent.action).where(AuditEvent.object_type == "alert")
        ).scalars()
    )
    assert actions == {"alert.acknowledged", "alert.resolved"}


def test_silence_in_business_hours_names_the_source_system(
    app, client, make_user, sink, smtp, chat, run_worker
):
    ctx = alert_flow(
        app,
        client,
        make_user,
        sink,
        smtp,
        chat,
        sla={"max_latency_seconds": 60, "business_hours": ALWAYS_OPEN},
    )
    flow_id = ctx["flow"]["id"]
    r = client.put(
        f"/api/v1/flows/{flow_id}/alert-rules",
        json={"rules": [{"kind": "silence", "params": {"minutes": 2}}]},
        headers=ctx["owner_headers"],
    )
    assert r.status_code == 200, r.get_json()
    post_order(client, ctx)
    run_worker()
    assert alerts.evaluate(app)["opened"] == 0  # a message just arrived
    db.session.execute(update(Run).values(received_at=utcnow() - timedelta(minutes=3)))
    db.session.commit()
    assert alerts.evaluate(app)["opened"] == 1
    [alert] = active(flow_id)
    assert alert.kind == "silence" and alert.system_name == "Test shop"
    assert "no message" in alert.summary
    post_order(client, ctx, dict(ORDER, order_number=4242))  # traffic is back
    run_worker()
    assert alerts.evaluate(app)["resolved"] == 1


def test_alert_rules_default_from_the_contract_and_owners_override_them(
    app, client, make_user, sink, smtp, chat
):
    ctx = alert_flow(app, client, make_user, sink, smtp, chat)
    url = f"/api/v1/flows/{ctx['flow']['id']}/alert-rules"
    rules = {r["kind"]: r for r in client.get(url, headers=ctx["headers"]).get_json()["rules"]}
    assert rules["latency_p95"]["params"]["max_seconds"] == 60  # the contract's SLA
    assert rules["silence"]["enabled"] is True  # business hours declared
    assert rules["escalation"]["params"]["after_minutes"] == 15
    change = {"rules": [{"kind": "consecutive_failures", "params": {"threshold": 10}}]}
    assert client.put(url, json=change, headers=ctx["headers"]).status_code == 403
    r = client.put(url, json=change, headers=ctx["owner_headers"])
    assert r.status_code == 200, r.get_json()
    rules = {x["kind"]: x for x in r.get_json()["rules"]}
    assert rules["consecutive_failures"]["params"]["threshold"] == 10
    assert rules["consecutive_failures"]["overridden"] is True
    bad = {"rules": [{"kind": "moon_phase"}]}
    assert client.put(url, json=bad, headers=ctx["owner_headers"]).status_code == 422
    bad = {"rules": [{"kind": "silence", "params": {"nope": 1}}]}
    assert client.put(url, json=bad, headers=ctx["owner_headers"]).status_code == 422


def test_raised_threshold_means_no_alert(app, client, make_user, sink, smtp, chat, run_worker):
    ctx = alert_flow(app, client, make_user, sink, smtp, chat)
    client.put(
        f"/api/v1/flows/{ctx['flow']['id']}/alert-rules",
        json={"rules": [{"kind": "consecutive_failures", "params": {"threshold": 10}}]},
        headers=ctx["owner_headers"],
    )
    db.session.rollback()
    fail_orders(client, ctx, sink, run_worker)
    assert alerts.evaluate(app)["opened"] == 0 and smtp.messages == []


def test_a_second_scheduler_does_not_evaluate_the_same_beat(app):
    assert alerts.tick(app) is not None
    assert alerts.tick(app) is None


def test_broken_smtp_is_logged_and_the_webhook_still_goes(
    app, client, make_user, sink, smtp, chat, run_worker
):
    ctx = alert_flow(app, client, make_user, sink, smtp, chat)
    smtp.recorder.refuse["tech.owner@example.test"] = "550 No such user"
    fail_orders(client, ctx, sink, run_worker)
    alerts.evaluate(app)
    rows = {n.channel: n for n in db.session.execute(select(AlertNotification)).scalars()}
    # The outbox carries the outcome; a refused recipient is final (no retry can help).
    assert rows["email"].outbox.status == "failed" and "550" in rows["email"].outbox.last_error
    assert rows["webhook"].outbox.status == "sent" and rows["webhook"].outbox.attempts == 1
    assert [r.path for r in chat.requests] == ["/chat"]
    detail = client.get(f"/api/v1/alerts/{rows['email'].alert_id}", headers=ctx["owner_headers"])
    shown = {n["channel"]: n for n in detail.get_json()["notifications"]}
    assert shown["email"]["ok"] is False and shown["email"]["status"] == "failed"
    assert "550" in shown["email"]["error"] and shown["email"]["attempts"] == 1
    assert shown["webhook"]["ok"] is True and shown["webhook"]["status"] == "sent"


def test_open_alerts_are_a_prometheus_gauge_and_documented_in_openapi(
    app, client, make_user, sink, smtp, chat, run_worker
):
    ctx = alert_flow(app, client, make_user, sink, smtp, chat)
    fail_orders(client, ctx, sink, run_worker)
    alerts.evaluate(app)
    text = client.get("/metrics", headers=ctx["headers"]).get_data(as_text=True)
    slug = ctx["flow"]["slug"]
    assert f'flowgate_alerts_open{{flow="{slug}",severity="critical",state="open"}} 1.0' in text
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for path in (
        "/api/v1/alerts",
        "/api/v1/alerts/{alert_id}/acknowledge",
        "/api/v1/flows/{flow_id}/alert-rules",
        "/api/v1/flows/{flow_id}/reliability",
        "/api/v1/flows/{flow_id}/reconciliation",
    ):
        assert path in paths


def test_demo_oms_outage_is_an_owner_control(app, client, make_user):
    from app.demo import demo_api_key

    _, analyst = make_user("analyst")
    _, owner = make_user("owner")
    key = {"X-API-Key": demo_api_key(app.config["SECRET_KEY"])}
    assert client.post("/demo/oms/outage", json={"down": True}).status_code == 401
    assert client.post("/demo/oms/outage", json={"down": True}, headers=analyst).status_code == 403
    assert client.post("/demo/oms/outage", json={"down": "yes"}, headers=owner).status_code == 400
    r = client.post("/demo/oms/outage", json={"down": True}, headers=owner)
    assert r.status_code == 200 and r.get_json() == {"down": True}
    refused = client.post("/demo/oms/orders", json={"orderRef": "X"}, headers=key)
    assert refused.status_code == 503 and "down" in refused.get_json()["detail"]
    assert client.get("/demo/oms/outage").get_json() == {"down": True}
    client.post("/demo/oms/outage", json={"down": False}, headers=owner)
    assert client.post("/demo/oms/orders", json={"orderRef": "X"}, headers=key).status_code == 201
    db.session.rollback()
    actions = list(
        db.session.execute(
            select(AuditEvent.action).where(AuditEvent.action == "demo.oms_outage")
        ).scalars()
    )
    assert len(actions) == 2


def _insert_runs(flow_id: int, rows: list[dict[str, Any]]) -> None:
    from sqlalchemy import insert

    from app.models import FlowVersion

    version_id = db.session.execute(
        select(FlowVersion.id).where(FlowVersion.flow_id == flow_id, FlowVersion.status == "live")
    ).scalar_one()
    base = {"flow_id": flow_id, "flow_version_id": version_id, "trigger_kind": "webhook"}
    db.session.execute(
        insert(Run), [{**base, "payload": {}, "payload_hash": "x", **row} for row in rows]
    )
    db.session.commit()


def test_volume_latency_and_dead_letter_rules_read_the_ledger(
    app, client, make_user, sink, smtp, chat
):
    from flows.alerting import volume_windows

    ctx = alert_flow(
        app,
        client,
        make_user,
        sink,
        smtp,
        chat,
        sla={"max_latency_seconds": 60, "business_hours": ALWAYS_OPEN},
    )
    flow_id = ctx["flow"]["id"]
    now = utcnow()
    current, previous = volume_windows(now, "UTC", 4)
    rows: list[dict[str, Any]] = []
    for lo, _ in previous:  # 100 orders in the same hour on each of the last 4 same weekdays
        rows += [
            {"status": "succeeded", "received_at": lo + timedelta(seconds=i), "finished_at": lo}
            for i in range(100)
        ]
    # Last hour: 3 orders only (-90%); the last 15 minutes: slow deliveries and dead letters.
    rows += [
        {"status": "succeeded", "received_at": current[0] + timedelta(minutes=i)} for i in range(3)
    ]
    recent = now - timedelta(minutes=5)
    rows += [
        {
            "status": "succeeded",
            "received_at": recent,
            "finished_at": recent + timedelta(seconds=120),
        }
        for _ in range(6)
    ]
    rows += [
        {"status": "dead_lettered", "received_at": recent, "finished_at": recent, "reason": "x"}
        for _ in range(5)
    ]
    rows += [{"status": "succeeded", "received_at": now, "finished_at": now}]  # newest ok
    _insert_runs(flow_id, rows)

    alerts.evaluate(app)
    kinds = {a.kind: a for a in active(flow_id)}
    assert set(kinds) == {"volume_anomaly", "latency_p95", "dead_letter_growth"}
    in_last_hour = sum(1 for r in rows if current[0] <= r["received_at"] < current[1])
    assert 3 <= in_last_hour <= 15  # the newest rows may fall into it shortly after the hour
    assert kinds["volume_anomaly"].details["current"] == in_last_hour
    assert kinds["volume_anomaly"].details["baseline"] == 100.0
    assert kinds["volume_anomaly"].system_name == "Test shop"  # the source went quiet
    assert kinds["latency_p95"].details["p95_seconds"] == 120.0
    assert kinds["dead_letter_growth"].details["new_dead_letters"] == 5


def test_one_outage_tripping_several_rules_sends_one_message(
    app, client, make_user, sink, smtp, chat, run_worker
):
    ctx = alert_flow(app, client, make_user, sink, smtp, chat)
    fail_orders(client, ctx, sink, run_worker, n=6)
    assert alerts.evaluate(app)["opened"] >= 2
    opened = {a.kind: a for a in active(ctx["flow"]["id"])}
    assert {"consecutive_failures", "failure_rate"} <= set(opened)
    [mail] = smtp.messages  # the most severe alert, naming the others
    text = mail.message.get_content()
    assert f"/alerts/{opened['consecutive_failures'].id}" in text
    assert "Also opened for this flow:" in text and "failure rate" in text
    [hook] = [r for r in chat.requests if r.path == "/chat"]
    assert {a["kind"] for a in hook.json()["also"]} == set(opened) - {"consecutive_failures"}
    grouped = [n for n in opened["failure_rate"].notifications if n.channel == "grouped"]
    assert len(grouped) == 1 and grouped[0].recipient == (
        f"with alert #{opened['consecutive_failures'].id}"
    )
