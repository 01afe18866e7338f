"""Reconciliation: a day's counts by status and destination, differences by business key,
external id checks against a real HTTP server, one-action replay, and the daily run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Alert, ReconciliationReport
from app.models._types import utcnow
from app.services import outbox, reconciliation
from tests.app.test_alerts import alert_flow
from tests.app.test_execution import post_order
from tests.app.test_walking_skeleton import ORDER
from tests.support.sink import Answer, Sink

UTC_DAY = {
    "max_latency_seconds": 60,
    "business_hours": {
        "timezone": "UTC",
        "days": [0, 1, 2, 3, 4, 5, 6],
        "start": "00:00",
        "end": "24:00",
    },
}


@pytest.fixture
def ids_api() -> Iterator[Sink]:
    server = Sink().start()
    yield server
    server.stop()


def mixed_day(client: Any, ctx: dict[str, Any], sink: Sink, run_worker: Any) -> None:
    """2001, 2002 delivered; 2003 refused for good (dead letter); 2004 unpaid (filtered)."""
    sink.default = Answer(status=201)
    post_order(client, ctx, dict(ORDER, order_number=2001))
    post_order(client, ctx, dict(ORDER, order_number=2002))
    run_worker()
    sink.default = Answer(status=400, body=b'{"error": "unknown sku"}')
    post_order(client, ctx, dict(ORDER, order_number=2003))
    post_order(client, ctx, dict(ORDER, order_number=2004, financial_status="pending"))
    run_worker()
    sink.default = Answer(status=201)


def reconcile(client: Any, ctx: dict[str, Any], **body: Any) -> dict[str, Any]:
    url = f"/api/v1/flows/{ctx['flow']['id']}/reconciliation"
    r = client.post(url, json=body, headers=ctx["owner_headers"])
    assert r.status_code == 201, r.get_json()
    db.session.rollback()
    return r.get_json()


def test_internal_counts_list_the_dead_letter_and_replay_clears_it(
    app, client, make_user, sink, smtp, chat, run_worker
):
    ctx = alert_flow(app, client, make_user, sink, smtp, chat, sla=UTC_DAY)
    mixed_day(client, ctx, sink, run_worker)

    report = reconcile(client, ctx)
    totals = report["result"]["totals"]
    assert totals == {
        "received": 4,
        "delivered": 2,
        "filtered": 1,
        "dead_lettered": 1,
        "pending": 0,
        "rejected": 0,
        "difference": 1,
    }
    [destination] = report["result"]["destinations"]
    assert destination["step_id"] == "send_oms" and destination["system"] == "Test OMS"
    assert destination["delivered"] == 2 and destination["dead_lettered"] == 1
    [diff] = report["result"]["differences"]
    assert diff["business_key"] == "2003" and diff["status"] == "dead_lettered"
    assert report["ok"] is False and report["differences"] == 1
    alert = db.session.execute(select(Alert).where(Alert.kind == "reconciliation")).scalar_one()
    assert alert.state == "open" and alert.run_id == diff["run_id"]
    assert outbox.tick(app)["sent"] >= 1  # queued with the report; the scheduler sends it
    assert any("Orders to OMS" in m.message["Subject"] for m in smtp.messages)

    replay = f"/api/v1/flows/{ctx['flow']['id']}/reconciliation/{report['id']}/replay"
    assert client.post(replay, headers=ctx["headers"]).status_code == 403
    r = client.post(replay, headers=ctx["owner_headers"])
    assert r.status_code == 202, r.get_json()
    assert r.get_json()["replayed"] == 1
    run_worker()

    clean = reconcile(client, ctx)
    assert clean["ok"] is True and clean["differences"] == 0
    assert clean["result"]["differences"] == []
    assert clean["result"]["totals"]["delivered"] == 3
    db.session.expire_all()
    assert db.session.get(Alert, alert.id).state == "resolved"
    listed = client.get(
        f"/api/v1/flows/{ctx['flow']['id']}/reconciliation", headers=ctx["headers"]
    ).get_json()["items"]
    assert [x["ok"] for x in listed] == [True, False]  # newest first, analysts may read


def test_external_check_lists_ids_missing_at_the_destination(
    app, client, make_user, sink, smtp, chat, run_worker, ids_api
):
    ctx = alert_flow(app, client, make_user, sink, smtp, chat, sla=UTC_DAY)
    mixed_day(client, ctx, sink, run_worker)
    r = client.post(
        "/api/v1/connections",
        json={"name": "OMS read API", "connector": "http", "config": {"base_url": ids_api.url}},
        headers=ctx["headers"],
    )
    assert r.status_code == 201, r.get_json()
    ids_api.default = Answer(
        status=200, body=b'{"data": {"orders": [{"ref": "2001"}, {"ref": "9999"}]}}'
    )
    checks_url = f"/api/v1/flows/{ctx['flow']['id']}/reconciliation/checks"
    check = {
        "name": "OMS orders of the day",
        "side": "destination",
        "connection_id": r.get_json()["id"],
        "path": "/orders",
        "query": {"date": "{day}"},
        "ids_expression": "data.orders.ref",
    }
    assert (
        client.put(checks_url, json={"checks": [check]}, headers=ctx["headers"]).status_code == 403
    )
    r = client.put(checks_url, json={"checks": [check]}, headers=ctx["owner_headers"])
    assert r.status_code == 200, r.get_json()
    db.session.rollback()

    day = utcnow().date()
    report = reconcile(client, ctx, day=day.isoformat())
    [external] = report["result"]["external"]
    assert external["missing"] == ["2002"]  # delivered according to us, unknown to the OMS
    assert external["unexpected"] == ["9999"]
    assert external["ok"] is False and external["error"] is None
    [request] = ids_api.requests
    assert urlsplit(request.path).path == "/orders"
    assert parse_qs(urlsplit(request.path).query) == {"date": [day.isoformat()]}

    # A tolerance of two differing ids accepts it.
    check["tolerance"] = 2
    client.put(checks_url, json={"checks": [check]}, headers=ctx["owner_headers"])
    db.session.rollback()
    assert reconcile(client, ctx)["result"]["external"][0]["ok"] is True

    ids_api.default = Answer(status=500, body=b"{}")
    failed = reconcile(client, ctx)["result"]["external"][0]
    assert failed["ok"] is False and "500" in failed["error"]


def test_reconciliation_input_and_roles(app, client, make_user, sink, smtp, chat):
    ctx = alert_flow(app, client, make_user, sink, smtp, chat)
    url = f"/api/v1/flows/{ctx['flow']['id']}/reconciliation"
    assert client.post(url, json={}, headers=ctx["headers"]).status_code == 403
    future = (utcnow() + timedelta(days=3)).date().isoformat()
    r = client.post(url, json={"day": future}, headers=ctx["owner_headers"])
    assert r.status_code == 422 and r.content_type == "application/problem+json"
    assert client.post(url, json={"day": "soon"}, headers=ctx["owner_headers"]).status_code == 422
    assert (
        client.post(
            "/api/v1/flows/9999/reconciliation", json={}, headers=ctx["owner_headers"]
        ).status_code
        == 404
    )
    checks = f"{url}/checks"
    bad = {"checks": [{"name": "x", "side": "middle", "connection_id": 1, "ids_expression": "a"}]}
    assert client.put(checks, json=bad, headers=ctx["owner_headers"]).status_code == 422


def test_daily_run_reconciles_yesterday_once_per_flow(
    app, client, make_user, sink, smtp, chat, run_worker
):
    ctx = alert_flow(app, client, make_user, sink, smtp, chat, sla=UTC_DAY)
    now = utcnow().replace(hour=1, minute=0)
    assert reconciliation.daily(app, now) == 1
    assert reconciliation.daily(app, now) == 0  # the same day is not reconciled twice
    [report] = db.session.execute(select(ReconciliationReport)).scalars()
    assert report.trigger == "scheduled" and report.flow_id == ctx["flow"]["id"]
    assert report.day == now.date() - timedelta(days=1)
    assert reconciliation.daily(app, now.replace(hour=0, minute=5) + timedelta(days=1)) == 0
