"""Dashboards (overall and per flow) and /metrics as a whole Prometheus text document."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from app.extensions import db
from app.models import Run
from app.models._types import utcnow
from app.services import rollup
from app.services.dashboard import LATENCY_BOUNDS, percentile
from tests.app.test_execution import post_order
from tests.app.test_walking_skeleton import ORDER, live_flow
from tests.support.sink import Answer


def backdate(run_id: int, hours: float) -> None:
    run = db.session.get(Run, run_id)
    shift = timedelta(hours=hours)
    run.received_at -= shift
    if run.finished_at:
        run.finished_at -= shift
    db.session.commit()


def test_flow_health_and_overall_dashboard(client, make_user, sink, run_worker):
    ctx = live_flow(client, make_user, sink)
    flow_id, h = ctx["flow"]["id"], ctx["headers"]
    ok = [post_order(client, ctx, dict(ORDER, order_number=n)) for n in (1, 2, 3)]
    run_worker()
    sink.default = Answer(status=400)
    post_order(client, ctx, dict(ORDER, order_number=4))
    old = post_order(client, ctx, dict(ORDER, order_number=6))
    run_worker()
    post_order(client, ctx, dict(ORDER, order_number=5))  # waits: no worker runs
    backdate(old, 30)  # 30 h ago: in the 7-day line, not in the last hour or the 24 h line
    backdate(ok[0], 2.5)  # 2.5 h ago: in the 24 h line, not in the last hour

    r = client.get(f"/api/v1/flows/{flow_id}/health", headers=h)
    assert r.status_code == 200, r.get_json()
    card = r.get_json()
    assert card["flow_id"] == flow_id
    assert card["runs_last_hour"] == 4  # runs 2, 3, 4 (dead-lettered) and 5 (queued)
    assert card["messages_per_minute"] == round(4 / 60, 2)
    assert card["failed_last_hour"] == 1
    assert card["success_rate"] == round(2 / 3, 4)
    assert card["dead_letters"] == 2  # runs 4 and 6, whenever received
    assert card["backlog"] == 1
    assert card["breaker"] == "closed"
    assert card["last_success_at"].endswith("Z")
    assert 0 < card["latency_p50_seconds"] <= card["latency_p95_seconds"] <= 60
    day, week = card["sparklines"]["24h"], card["sparklines"]["7d"]
    assert len(day["runs"]) == 24 and len(week["runs"]) == 28
    assert sum(day["runs"]) == 5 and sum(day["failed"]) == 1
    assert day["runs"][-1] >= 4  # the current hour, newest last
    assert sum(week["runs"]) == 6 and sum(week["failed"]) == 2

    # Rolled up into run_stats (here past every run: nothing is left to read live), the
    # card is the same.
    assert rollup.roll_up(utcnow() + timedelta(minutes=10)).buckets > 0
    assert client.get(f"/api/v1/flows/{flow_id}/health", headers=h).get_json() == card

    dash = client.get("/api/v1/dashboard", headers=h).get_json()
    assert [c["flow_id"] for c in dash["flows"]] == [flow_id]
    overall = dash["overall"]
    assert overall["runs_last_hour"] == 4 and overall["dead_letters"] == 2
    assert overall["sparklines"]["7d"]["runs"] == week["runs"]

    assert client.get("/api/v1/flows/999999/health", headers=h).status_code == 404
    assert client.get("/api/v1/dashboard").status_code == 401


def test_an_empty_installation_has_an_empty_dashboard(client, make_user):
    _, h = make_user("analyst")
    dash = client.get("/api/v1/dashboard", headers=h).get_json()
    assert dash["flows"] == []
    assert dash["overall"]["success_rate"] is None
    assert dash["overall"]["latency_p95_seconds"] is None
    assert dash["overall"]["sparklines"]["24h"]["runs"] == [0] * 24


def test_percentile_interpolates_within_a_bucket():
    counts = [0] * (len(LATENCY_BOUNDS) + 1)
    counts[LATENCY_BOUNDS.index(1)] = 10  # ten runs between 0.5 s and 1 s
    assert percentile(counts, 0.5) == 0.75
    assert percentile(counts, 1.0) == 1.0
    assert percentile([0] * len(counts), 0.5) is None


def test_metrics_is_one_valid_prometheus_document(client, make_user, sink, run_worker):
    ctx = live_flow(client, make_user, sink)
    slug = ctx["flow"]["slug"]
    post_order(client, ctx, dict(ORDER, order_number=1))
    run_worker()
    sink.default = Answer(status=400)
    post_order(client, ctx, dict(ORDER, order_number=2))
    run_worker()
    r = client.get("/metrics", headers=ctx["headers"])
    assert r.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(r.get_data(as_text=True))}
    assert all(name.startswith("flowgate_") for name in families)
    for name in (
        "flowgate_runs",
        "flowgate_run_latency_seconds",
        "flowgate_step_duration_seconds",
        "flowgate_delivery_latency_seconds",
        "flowgate_queue_depth",
        "flowgate_breaker_state",
        "flowgate_dead_letters",
    ):
        assert name in families, name
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert samples[("flowgate_runs_total", (("flow", slug), ("status", "succeeded")))] == 1
    assert samples[("flowgate_runs_total", (("flow", slug), ("status", "dead_lettered")))] == 1
    assert samples[("flowgate_dead_letters", (("flow", slug),))] == 1
    assert samples[("flowgate_delivery_latency_seconds_bucket", (("le", "+Inf"),))] == 1
    assert samples[("flowgate_delivery_latency_seconds_gcount", ())] == 1
