"""GET /api/v1/flows/<id>/trigger (SQLite and PostgreSQL): what a flow's trigger is doing —
schedule ticks and pauses, poll state (cursor only summarised), webhook URL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from app.extensions import db
from app.models import PollState
from app.models._types import utcnow
from app.services.intake import record_run
from app.services.polling import fire_due_polls
from app.services.trigger_state import cursor_summary
from app.services.triggers import fire_due_schedules
from tests.support.live_flows import deliver_to_sink, make_connection, make_live_flow
from tests.support.paged_api import PagedApi

POLL = {
    "path": "/stock",
    "interval_seconds": 60,
    "cursor_param": "cursor",
    "page_size_param": "limit",
    "page_size": 2,
    "items": "data.items",
    "next_cursor": "next",
    "id": "sku",
}


@pytest.fixture
def api() -> Iterator[PagedApi]:
    server = PagedApi().start()
    yield server
    server.stop()


def _get(client, headers, flow_id: int):
    return client.get(f"/api/v1/flows/{flow_id}/trigger", headers=headers)


def test_poll_state_is_shown_with_a_cursor_summary_never_the_cursor(
    app, client, make_user, api, sink
):
    _, analyst_h = make_user("analyst")
    api.add(*({"sku": f"SKU-CURSOR-{n}", "qty": n} for n in range(3)))
    connection_id = make_connection(
        "poll_http", {"base_url": api.url, "auth": "bearer"}, {"token": "poll-token-SECRET-9"}
    )
    trigger = {"type": "poll_http", "connection_id": connection_id, "config": POLL}
    flow, _ = make_live_flow(deliver_to_sink(trigger, sink.url), "Stock poll")

    body = _get(client, analyst_h, flow.id).get_json()
    assert body["type"] == "poll_http" and body["live"] is True
    assert body["poll"]["polls"] == 0 and body["poll"]["cursor"] is None
    assert body["schedule"] is None and body["webhook"] is None

    t0 = utcnow()
    assert fire_due_polls(app, t0)["fired"] == 3
    db.session.execute(
        update(PollState)
        .where(PollState.flow_id == flow.id)
        .values(cursor={"offset": "opaque-CURSOR-token-77"})
    )
    db.session.commit()
    r = _get(client, analyst_h, flow.id)
    assert r.status_code == 200, r.get_json()
    poll = r.get_json()["poll"]
    assert poll["polls"] == 1 and poll["fired"] == 3
    assert poll["interval_seconds"] == 60
    assert poll["last_polled_at"] and poll["next_poll_at"]
    next_at = datetime.fromisoformat(poll["next_poll_at"].replace("Z", "+00:00"))
    expected = (t0 + timedelta(seconds=60)).replace(tzinfo=UTC)
    assert abs(next_at - expected) < timedelta(milliseconds=2)  # the wire has milliseconds
    assert poll["cursor"].startswith("object with keys offset (#")
    assert "opaque-CURSOR-token-77" not in r.get_data(as_text=True)
    assert "poll-token-SECRET-9" not in r.get_data(as_text=True)
    assert poll["last_error"] is None and poll["paused_reason"] is None

    api.status = 503
    fire_due_polls(app, t0 + timedelta(seconds=61))
    poll = _get(client, analyst_h, flow.id).get_json()["poll"]
    assert "HTTP 503" in poll["last_error"]


def test_schedule_shows_next_tick_last_fired_and_why_it_paused(app, client, make_user, sink):
    _, analyst_h = make_user("analyst")
    app.config["FLOWGATE_MAX_BACKLOG"] = 1
    doc = deliver_to_sink(
        {"type": "schedule", "config": {"cron": "* * * * *", "timezone": "Europe/Berlin"}},
        sink.url,
    )
    flow, version = make_live_flow(doc, "Nightly")
    body = _get(client, analyst_h, flow.id).get_json()
    schedule = body["schedule"]
    assert body["type"] == "schedule" and schedule["timezone"] == "Europe/Berlin"
    next_tick = datetime.fromisoformat(schedule["next_tick"].replace("Z", "+00:00"))
    now = datetime.now(UTC)
    assert now < next_tick <= now + timedelta(minutes=1) and next_tick.second == 0
    assert schedule["last_fired"] is None and schedule["paused_reason"] is None

    now = now.replace(second=1, microsecond=0)
    tick = now.replace(second=0)
    record_run(flow, version, trigger_kind="manual", message={})  # backlog at the limit
    assert fire_due_schedules(app, now)["paused"] == 1
    schedule = _get(client, analyst_h, flow.id).get_json()["schedule"]
    assert schedule["paused_reason"].startswith("backlog:") and schedule["paused_at"]

    app.config["FLOWGATE_MAX_BACKLOG"] = 100
    app.extensions.pop("flowgate.backlog", None)
    assert fire_due_schedules(app, now.replace(second=3))["fired"] == 1
    schedule = _get(client, analyst_h, flow.id).get_json()["schedule"]
    assert schedule["last_fired"] == tick.isoformat(timespec="milliseconds")
    assert schedule["paused_reason"] is None


def test_webhook_url_and_a_flow_without_live_version(app, client, make_user, sink):
    _, analyst_h = make_user("analyst")
    flow, _ = make_live_flow(deliver_to_sink({"type": "webhook"}, sink.url), "Orders in")
    body = _get(client, analyst_h, flow.id).get_json()
    assert body["webhook"]["url"].endswith(f"/hooks/{flow.slug}")
    assert body["webhook"]["url"].startswith("http")
    assert body["webhook"]["accepting"] is True

    app.config["FLOWGATE_PUBLIC_URL"] = "https://flowgate.shop.example/"
    body = _get(client, analyst_h, flow.id).get_json()
    assert body["webhook"]["url"] == f"https://flowgate.shop.example/hooks/{flow.slug}"

    draft = client.post("/api/v1/flows", json={"name": "Draft only"}, headers=analyst_h)
    r = _get(client, analyst_h, draft.get_json()["id"])
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["live"] is False
    if body["type"] == "webhook":
        assert body["webhook"]["accepting"] is False


def test_unknown_flow_is_404_and_anonymous_is_refused(client, make_user):
    _, analyst_h = make_user("analyst")
    r = _get(client, analyst_h, 999999)
    assert r.status_code == 404 and r.get_json()["status"] == 404
    assert client.get("/api/v1/flows/1/trigger").status_code == 401
    spec = client.get("/api/v1/openapi.json").get_json()
    assert "get" in spec["paths"]["/api/v1/flows/{flow_id}/trigger"]


def test_cursor_summary_shows_shape_and_fingerprint_only():
    assert cursor_summary(None) is None
    secret = "eyJhbGciOi-NEXT-PAGE-TOKEN"
    text = cursor_summary(secret)
    assert text is not None and text.startswith(f"string of {len(secret)} chars (#")
    assert secret not in text
    assert cursor_summary({"watermark": "2026-01-01", "id": 7}).startswith(
        "object with keys id, watermark (#"
    )
    assert cursor_summary(["a", "b"]).startswith("list of 2 items")
    assert cursor_summary(secret) != cursor_summary(secret + "x")  # it shows the cursor move
    assert json.dumps(cursor_summary({"k" * 500: 1})).count("k") < 100
