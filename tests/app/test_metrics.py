"""GET /metrics: Prometheus text computed from SQL and Redis, and who may read it."""

from __future__ import annotations

import random
import time
from datetime import timedelta
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, insert, select

from app.extensions import db
from app.models import Flow, FlowVersion, Run, RunStep
from app.models._types import utcnow
from tests.app.test_execution import post_order
from tests.app.test_walking_skeleton import ORDER, live_flow
from tests.support.sink import Answer


class Scrape:
    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in self.families.values():
            for sample in family.samples:
                self.samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, tuple(sorted(labels.items())))]

    def bucket(self, name: str, le: str, **labels: str) -> float:
        return self.value(f"{name}_bucket", le=le, **labels)


def scrape(client: Any, headers: dict[str, str]) -> Scrape:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return Scrape(response.get_data(as_text=True))


def test_counts_per_flow_and_status_queue_depth_and_latency(
    client, make_user, sink, run_worker, app
):
    ctx = live_flow(client, make_user, sink)
    slug = ctx["flow"]["slug"]
    post_order(client, ctx, dict(ORDER, order_number=1))
    post_order(client, ctx, dict(ORDER, order_number=2))
    post_order(client, ctx, dict(ORDER, order_number=3, financial_status="pending"))
    run_worker()
    post_order(client, ctx, dict(ORDER, order_number=4))  # stays queued: no worker runs

    m = scrape(client, ctx["headers"])
    assert all(name.startswith("flowgate_") for name in m.families)
    assert m.value("flowgate_runs_total", flow=slug, status="succeeded") == 2
    assert m.value("flowgate_runs_total", flow=slug, status="filtered") == 1
    assert m.value("flowgate_runs_total", flow=slug, status="dead_lettered") == 0
    assert m.value("flowgate_runs_waiting", flow=slug) == 1
    assert m.value("flowgate_runs_running", flow=slug) == 0
    assert m.value("flowgate_dead_letters", flow=slug) == 0
    assert m.value("flowgate_queue_depth", queue=app.config["FLOWGATE_QUEUE_NAME"]) == 1
    assert m.value("flowgate_deliveries_total", status="acknowledged") == 2
    assert m.value("flowgate_deliveries_pending", status="retrying") == 0
    assert m.value("flowgate_up", source="sql") == 1 and m.value("flowgate_up", source="redis")

    # Run latency: three runs finished (two delivered, one filtered), all within seconds.
    latency = m.families["flowgate_run_latency_seconds"]
    assert latency.type == "histogram"
    assert m.bucket("flowgate_run_latency_seconds", "+Inf") == 3
    assert m.bucket("flowgate_run_latency_seconds", "60.0") == 3
    assert m.value("flowgate_run_latency_seconds_gcount") == 3
    assert 0 < m.value("flowgate_run_latency_seconds_gsum") < 180
    # Steps: the filter ran three times, the map and the delivery twice.
    assert m.bucket("flowgate_step_duration_seconds", "+Inf", type="filter") == 3
    assert m.bucket("flowgate_step_duration_seconds", "+Inf", type="map") == 2
    assert m.bucket("flowgate_step_duration_seconds", "+Inf", type="deliver") == 2
    buckets = [
        s.value
        for s in m.families["flowgate_step_duration_seconds"].samples
        if s.labels.get("type") == "deliver"
    ]
    assert buckets == sorted(buckets)  # cumulative


def test_breaker_open_and_dead_letters(client, make_user, sink, run_worker, app):
    from app.worker import configure_engine

    app.config["FLOWGATE_BREAKER_THRESHOLD"] = 2
    app.config["FLOWGATE_BREAKER_COOLDOWN_SECONDS"] = 30
    app.extensions.pop("flowgate.gate", None)
    configure_engine(app)  # rebuild the worker's gate with these settings
    ctx = live_flow(client, make_user, sink)
    slug = ctx["flow"]["slug"]
    connection = client.get("/api/v1/connections", headers=ctx["headers"]).get_json()["items"][0]
    labels = {"connection": connection["name"], "connection_id": str(connection["id"])}

    before = scrape(client, ctx["headers"])
    assert before.value("flowgate_breaker_open", **labels) == 0
    assert before.value("flowgate_breaker_state", state="closed", **labels) == 1

    sink.default = Answer(status=503)
    for n in range(3):
        post_order(client, ctx, dict(ORDER, order_number=n))
    run_worker()
    after = scrape(client, ctx["headers"])
    assert after.value("flowgate_breaker_open", **labels) == 1
    assert after.value("flowgate_breaker_state", state="open", **labels) == 1
    assert after.value("flowgate_breaker_state", state="closed", **labels) == 0
    assert after.value("flowgate_breaker_consecutive_failures", **labels) == 2
    assert after.value("flowgate_runs_waiting", flow=slug) == 3  # all retrying
    assert after.value("flowgate_deliveries_pending", status="retrying") == 2

    sink.default = Answer(status=400)
    app.extensions.pop("flowgate.gate", None)
    from app.redis_conn import get_redis

    get_redis(app).delete(*get_redis(app).keys("flowgate:*:gate:*"))  # close the breaker
    configure_engine(app)
    post_order(client, ctx, dict(ORDER, order_number=99))
    run_worker()
    final = scrape(client, ctx["headers"])
    assert final.value("flowgate_dead_letters", flow=slug) == 1
    assert final.value("flowgate_runs_total", flow=slug, status="dead_lettered") == 1
    assert final.value("flowgate_deliveries_total", status="dead_lettered") == 1


def test_metrics_need_a_token_even_from_loopback(client, make_user, app):
    # The test client calls from 127.0.0.1, like a reverse proxy in front of gunicorn would.
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.mimetype == "application/problem+json"
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401

    app.config["FLOWGATE_METRICS_TOKEN"] = "scrape-token-for-prometheus"
    ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-for-prometheus"})
    assert ok.status_code == 200 and "flowgate_queue_depth" in ok.get_data(as_text=True)
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-token"}).status_code == (
        401
    )
    _, viewer = make_user("analyst")  # any user's API token works too
    assert client.get("/metrics", headers=viewer).status_code == 200


def test_metrics_token_is_read_from_the_environment(monkeypatch, tmp_path):
    from app import create_app

    monkeypatch.setenv("FLOWGATE_METRICS_TOKEN", "from-env")
    made = create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x"})
    assert made.config["FLOWGATE_METRICS_TOKEN"] == "from-env"


def test_scrape_degrades_when_redis_is_down(client, make_user, app):
    _, headers = make_user("analyst")
    app.config["FLOWGATE_REDIS_URL"] = "redis://127.0.0.1:1/0"
    app.extensions.pop("flowgate.redis", None)
    app.extensions.pop("flowgate.gate", None)
    m = scrape(client, headers)
    assert m.value("flowgate_up", source="redis") == 0
    assert m.value("flowgate_up", source="sql") == 1
    assert "flowgate_run_latency_seconds" in m.families


def _bulk_runs(app: Any, flow_id: int, version_id: int, count: int) -> None:
    """``count`` finished runs spread over two hours, three steps each, inserted in bulk."""
    rng = random.Random(7)
    now = utcnow()
    statuses = ["succeeded"] * 8 + ["filtered", "dead_lettered"]
    runs = []
    for n in range(count):
        received = now - timedelta(seconds=rng.uniform(0, 7200))
        runs.append(
            {
                "flow_id": flow_id,
                "flow_version_id": version_id,
                "trigger_kind": "webhook",
                "payload": {"n": n},
                "payload_hash": "0" * 64,
                "business_key": str(n),
                "status": rng.choice(statuses),
                "attempts": 1,
                "received_at": received,
                "finished_at": received + timedelta(seconds=rng.uniform(0.01, 5)),
            }
        )
    db.session.execute(insert(Run), runs)
    ids = db.session.execute(select(Run.id).where(Run.flow_id == flow_id)).scalars().all()
    steps = [
        {
            "run_id": run_id,
            "position": position,
            "step_id": step_id,
            "status": "succeeded",
            "duration_ms": rng.uniform(0.1, 50),
            "attempt": 1,
        }
        for run_id in ids
        for position, step_id in enumerate(("only_paid", "to_oms_order", "send_oms"))
    ]
    db.session.execute(insert(RunStep), steps)
    db.session.commit()


def test_scrape_cost_is_bounded(client, make_user, sink, app, capsys):
    """10,000 runs (30,000 steps) in the ledger: a scrape stays well under a second."""
    ctx = live_flow(client, make_user, sink)
    flow = db.session.get(Flow, ctx["flow"]["id"])
    version = db.session.execute(
        select(FlowVersion).where(FlowVersion.flow_id == flow.id)
    ).scalar_one()
    _bulk_runs(app, flow.id, version.id, 10_000)
    try:
        scrape(client, ctx["headers"])  # warm: caches, connection pool
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            m = scrape(client, ctx["headers"])
            timings.append(time.perf_counter() - started)
    finally:
        # The next test's table wipe inspects SQLite from a second connection inside its
        # DELETE transaction; 40,000 rows would spill that transaction to an exclusive lock.
        db.session.rollback()
        db.session.execute(delete(RunStep))
        db.session.execute(delete(Run))
        db.session.commit()
    total = sum(
        m.value("flowgate_runs_total", flow=flow.slug, status=s)
        for s in ("succeeded", "filtered", "dead_lettered", "rejected")
    )
    assert total == 10_000
    recent = m.bucket("flowgate_run_latency_seconds", "+Inf")
    assert 0 < recent < 10_000  # only the last 15 minutes
    assert m.bucket("flowgate_step_duration_seconds", "+Inf", type="deliver") == recent
    with capsys.disabled():
        print(
            f"\n[metrics] {db.engine.dialect.name}: scrape of 10k runs "
            f"{min(timings) * 1000:.0f} ms (best of 3), "
            f"collector {m.value('flowgate_scrape_duration_seconds') * 1000:.0f} ms"
        )
    assert min(timings) < 1.0


def test_queue_depth_counts_queued_runs_not_drain_jobs(client, make_user, sink, run_worker, app):
    """Intake wakes one drain job for many runs (app.queues): the gauge must count runs."""
    from app.queues import run_queue

    ctx = live_flow(client, make_user, sink)
    for number in range(1, 4):
        post_order(client, ctx, dict(ORDER, order_number=number))
    with app.app_context():
        jobs = run_queue(app).count
    assert jobs < 3  # the wake marker coalesced the wake-ups

    name = app.config["FLOWGATE_QUEUE_NAME"]
    assert scrape(client, ctx["headers"]).value("flowgate_queue_depth", queue=name) == 3
    run_worker()
    assert scrape(client, ctx["headers"]).value("flowgate_queue_depth", queue=name) == 0


def test_refused_webhooks_are_counted_per_flow_and_status(client, make_user, sink, caplog, app):
    """A refused webhook stores nothing in SQL; the counter is how operations see that a
    sender's messages are being turned away (and why, by status)."""
    ctx = live_flow(client, make_user, sink, event_id_header="X-Shopify-Event-Id")
    slug = ctx["flow"]["slug"]
    hook = f"/hooks/{slug}"
    for raw in (b'{"order_number": ', b"[NaN]"):
        assert client.post(hook, data=raw, content_type="application/json").status_code == 400
    assert client.post(hook, data=b"{}", content_type="text/plain").status_code == 415
    headers = {"X-Shopify-Event-Id": "evt-7"}
    assert client.post(hook, json=ORDER, headers=headers).status_code == 202
    conflicting = client.post(hook, json={**ORDER, "order_number": 2}, headers=headers)
    assert conflicting.status_code == 422
    assert client.post("/hooks/no-such-flow", json=ORDER).status_code == 404
    app.config["FLOWGATE_MAX_BODY_BYTES"] = 1000  # a 413 comes before the flow is looked up
    oversized = b'{"pad": "' + b"x" * 2000 + b'"}'
    for target in ("/hooks/made-up-slug", hook):
        refused = client.post(target, data=oversized, content_type="application/json")
        assert refused.status_code == 413

    got = scrape(client, ctx["headers"])
    assert got.value("flowgate_webhooks_refused_total", flow=slug, status="400") == 2
    assert got.value("flowgate_webhooks_refused_total", flow=slug, status="415") == 1
    assert got.value("flowgate_webhooks_refused_total", flow=slug, status="422") == 1
    assert got.value("flowgate_webhooks_refused_total", flow=slug, status="413") == 1
    refused = got.families["flowgate_webhooks_refused"].samples
    assert {s.labels["flow"] for s in refused} == {slug}  # a made-up slug adds no series
    assert "intake.idempotency_conflict" in caplog.text and "evt-7" in caplog.text
