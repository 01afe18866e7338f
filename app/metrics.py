"""Prometheus metrics, computed at scrape time from the shared truth (SQL and Redis).

Why scrape-time and not counters incremented in each process: the web runs several gunicorn
processes and the workers are separate processes, possibly on other machines. Per-process
counters would need prometheus_client's multiprocess mode (a shared PROMETHEUS_MULTIPROC_DIR,
cleanup hooks in gunicorn, and still one directory per machine, so workers elsewhere would be
invisible to the web's ``/metrics``). The SQL ledger and Redis already hold every number asked
for, agree across processes and machines, and survive restarts; any web process answers the
same. The price is a few queries per scrape, kept bounded:

- counts are one ``GROUP BY flow_id, status`` over ``runs`` and one ``GROUP BY status`` over
  ``deliveries`` (a single pass each; no per-flow queries);
- the latency histograms read only runs that *finished* in the last ``WINDOW_SECONDS``
  (15 min) and were received in the last ``LOOKBACK_SECONDS`` (1 h; that bound lets the
  ``received_at`` index limit the scan, since ``finished_at`` has no index), and are bucketed
  in SQL (one CASE per row, then GROUP BY bucket), so at most one row per bucket comes back
  (steps: per flow version, step id and bucket; step types come from the cached definitions);
- Redis: one ``LLEN`` for the queue and two ``GET`` per connection for its breaker.

Measured on the 2-core dev box (under load from other test runs), whole scrape, runs spread
evenly over two hours with three steps each (``test_scrape_cost_is_bounded`` prints the 10k
case and fails above 1 s):

==============================  ==========  ============
ledger                          SQLite      PostgreSQL
==============================  ==========  ============
10,000 runs                     50-90 ms    80-95 ms
200,000 runs (100k/hour)        ~1.8 s      ~0.4 s
200,000 runs, with the indexes  ~0.5 s      ~0.3 s
==============================  ==========  ============

The counts grow with the ledger (a full pass per scrape; no retention exists yet); the
histograms grow with the traffic of the last hour. "With the indexes" is a migration this
module does not ship yet: ``runs (flow_id, status)`` makes the counts a covering-index scan
(SQLite: ~1 s → ~40 ms at 200k) and ``runs (finished_at)`` would let ``_recently_finished``
drop its ``received_at`` bound. Scrape every 15-60 s, from one Prometheus.

Because they cover a sliding window, the two histograms are exposed as Prometheus *gauge
histograms* (``# TYPE … histogram`` with ``_bucket``, then ``_gcount`` and ``_gsum`` gauges):
query them without ``rate()``, e.g. ``histogram_quantile(0.95,
flowgate_run_latency_seconds_bucket)`` is the p95 over the last 15 minutes.

Metrics (all prefixed ``flowgate_``):

=====================================  =========  ==============================================
``runs_total{flow,status}``            counter    runs in a final status (succeeded, filtered,
                                                  dead_lettered, rejected), per flow slug; a
                                                  dead-letter replay moves a run back out of
                                                  ``dead_lettered`` (a rare decrease)
``runs_waiting{flow}``                 gauge      queued + retrying runs
``runs_running{flow}``                 gauge      runs a worker holds now
``dead_letters{flow}``                 gauge      runs in ``dead_lettered`` now
``deliveries_total{status}``           counter    deliveries acknowledged / dead-lettered
``deliveries_pending{status}``         gauge      deliveries sending / retrying now
``run_latency_seconds``                gaugehist  received → finished, last 15 min
``step_duration_seconds{type}``        gaugehist  step durations (map, filter, deliver; skipped
                                                  deliveries left out), runs finished in 15 min
``delivery_latency_seconds``           gaugehist  first delivery attempt → acknowledged (retries
                                                  included), runs finished in 15 min
``queue_depth{queue}``                 gauge      runs queued for the workers (status ``queued``);
                                                  from the same SQL count as ``runs_waiting``:
                                                  the RQ queue holds one drain job per wake-up,
                                                  not one job per run (app.queues)
``breaker_open{connection,connection_id}``  gauge 1 while a connection's breaker is open
``breaker_state{connection,connection_id,state}``  stateset: 1 for the current state of
                                                  closed / open / half_open, 0 for the others
``breaker_consecutive_failures{…}``    gauge      transient failures since the last success
``webhooks_refused_total{flow,status}``  counter  webhooks answered 4xx/5xx (not 404), per flow
                                                  slug and status: one ``HGETALL`` (they store
                                                  nothing in SQL)
``up{source}``                         gauge      1 if ``sql`` / ``redis`` answered this scrape
``scrape_duration_seconds``            gauge      time this scrape took
=====================================  =========  ==============================================

``flowgate_alerts_open{flow,severity,state}`` (gauge): alerts not resolved yet (open or
acknowledged), one GROUP BY over the alerts table (app.services.alerts).

Nothing here reads payloads, configs or secrets; labels are flow slugs, connection names and
ids, statuses and step types.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from flask import Flask
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select

from app import runtime
from app.extensions import db
from app.models import Connection, Delivery, Flow, FlowVersion, Run, RunStep
from app.models._types import utcnow
from app.redis_conn import get_redis
from app.services import intake
from flows.definition import base_step_id
from flows.results import FINAL_RUN_STATUSES, DeliveryStatus, RunStatus, StepStatus

log = logging.getLogger("flowgate.metrics")

WINDOW_SECONDS = 15 * 60
LOOKBACK_SECONDS = 60 * 60
RUN_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
STEP_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BREAKER_STATES = ("closed", "open", "half_open")

_FINAL = sorted(s.value for s in FINAL_RUN_STATUSES)
_WAITING = (RunStatus.QUEUED.value, RunStatus.RETRYING.value)
_DELIVERIES_FINAL = (DeliveryStatus.ACKNOWLEDGED.value, DeliveryStatus.DEAD_LETTERED.value)
_DELIVERIES_PENDING = (DeliveryStatus.SENDING.value, DeliveryStatus.RETRYING.value)
_STEP_TYPES_CACHE = "flowgate.metrics.step_types"
_STEP_TYPES_CACHE_MAX = 1000


class FlowgateCollector(Collector):
    """Collects every Flowgate metric at scrape time; needs an application context."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def describe(self) -> Iterable[Metric]:
        return []  # never run the queries just to register the collector

    def collect(self) -> Iterable[Metric]:
        started = time.perf_counter()
        metrics: list[Metric] = []
        connections: list[tuple[int, str]] = []
        up = GaugeMetricFamily(
            "flowgate_up", "1 if the source answered during this scrape", labels=["source"]
        )

        def from_sql() -> None:
            now = utcnow()
            runs, queued = _run_counts()
            depth = GaugeMetricFamily(
                "flowgate_queue_depth", "Runs queued for the workers", labels=["queue"]
            )
            depth.add_metric([self.app.config["FLOWGATE_QUEUE_NAME"]], queued)
            metrics.extend(runs + [depth] + _delivery_counts())
            metrics.append(_run_latency(now))
            metrics.append(_step_durations(self.app, now))
            metrics.append(_delivery_latency(now))
            metrics.append(_alerts_open())
            connections.extend(
                db.session.execute(select(Connection.id, Connection.name).order_by(Connection.id))
                .tuples()
                .all()
            )
            db.session.rollback()  # end the read transaction: hold no snapshot between scrapes

        def from_redis() -> None:
            get_redis(self.app).ping()  # up{redis} even when no connection has a breaker
            metrics.extend(_breakers(self.app, connections))
            metrics.append(_webhooks_refused(self.app))

        for source, section in (("sql", from_sql), ("redis", from_redis)):
            try:
                section()
                up.add_metric([source], 1)
            except Exception as exc:  # a scrape reports what it can; the gap shows in up{}
                log.warning("metrics.source_failed source=%s error=%s", source, type(exc).__name__)
                db.session.rollback()
                up.add_metric([source], 0)
        metrics.append(up)
        duration = GaugeMetricFamily(
            "flowgate_scrape_duration_seconds", "Time this scrape took to compute"
        )
        duration.add_metric([], time.perf_counter() - started)
        metrics.append(duration)
        return metrics


def _webhooks_refused(app: Flask) -> Metric:
    """One HGETALL: webhooks answered 4xx/5xx per flow and status (nothing of them is in
    SQL, by design; ``app.services.intake.count_refusal``)."""
    refused = CounterMetricFamily(
        "flowgate_webhooks_refused",
        "Webhooks refused (malformed, unsigned, too large, wrong type, conflicting, throttled "
        "or unstorable) per flow and HTTP status, since Redis last lost its data",
        labels=["flow", "status"],
    )
    for (slug, status), count in sorted(intake.refusal_counts(get_redis(app)).items()):
        refused.add_metric([slug, str(status)], count)
    return refused


def _run_counts() -> tuple[list[Metric], int]:
    """The per-flow run gauges and counters, and how many runs are queued in all; one
    GROUP BY over runs (the status index), whose cost does not grow with the backlog's jobs."""
    slugs = dict(db.session.execute(select(Flow.id, Flow.slug)).all())
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    rows = db.session.execute(
        select(Run.flow_id, Run.status, func.count()).group_by(Run.flow_id, Run.status)
    )
    for flow_id, status, count in rows:
        counts[flow_id][status] = count
    total = CounterMetricFamily(
        "flowgate_runs",
        "Runs in a final status, per flow (a dead-letter replay moves a run back out)",
        labels=["flow", "status"],
    )
    waiting = GaugeMetricFamily(
        "flowgate_runs_waiting", "Runs queued or waiting for a retry", labels=["flow"]
    )
    running = GaugeMetricFamily("flowgate_runs_running", "Runs a worker holds", labels=["flow"])
    dead = GaugeMetricFamily(
        "flowgate_dead_letters", "Runs in status dead_lettered", labels=["flow"]
    )
    for flow_id, slug in sorted(slugs.items(), key=lambda item: item[1]):
        by_status = counts.get(flow_id, {})
        for status in _FINAL:
            total.add_metric([slug, status], by_status.get(status, 0))
        waiting.add_metric([slug], sum(by_status.get(s, 0) for s in _WAITING))
        running.add_metric([slug], by_status.get(RunStatus.RUNNING.value, 0))
        dead.add_metric([slug], by_status.get(RunStatus.DEAD_LETTERED.value, 0))
    queued = sum(by_status.get(RunStatus.QUEUED.value, 0) for by_status in counts.values())
    return [total, waiting, running, dead], queued


def _alerts_open() -> Metric:
    from app.models import Alert

    gauge = GaugeMetricFamily(
        "flowgate_alerts_open",
        "Alerts not resolved yet (open or acknowledged)",
        labels=["flow", "severity", "state"],
    )
    rows = db.session.execute(
        select(Flow.slug, Alert.severity, Alert.state, func.count())
        .join(Flow, Flow.id == Alert.flow_id)
        .where(Alert.state.in_(("open", "acknowledged")))
        .group_by(Flow.slug, Alert.severity, Alert.state)
    ).all()
    for slug, severity, state, count in rows:
        gauge.add_metric([slug, severity, state], count)
    return gauge


def _delivery_counts() -> list[Metric]:
    counts = dict(
        db.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
    )
    total = CounterMetricFamily(
        "flowgate_deliveries",
        "Deliveries acknowledged by their destination or dead-lettered",
        labels=["status"],
    )
    for status in _DELIVERIES_FINAL:
        total.add_metric([status], counts.get(status, 0))
    pending = GaugeMetricFamily(
        "flowgate_deliveries_pending", "Deliveries in flight or waiting to retry", labels=["status"]
    )
    for status in _DELIVERIES_PENDING:
        pending.add_metric([status], counts.get(status, 0))
    return [total, pending]


def _recently_finished(now: Any) -> tuple[Any, ...]:
    """Runs that finished in the window; the received_at bound lets its index cap the scan."""
    return (
        Run.received_at >= now - timedelta(seconds=LOOKBACK_SECONDS),
        Run.finished_at >= now - timedelta(seconds=WINDOW_SECONDS),
    )


def _seconds_between(start: Any, end: Any) -> Any:
    if db.engine.dialect.name == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0  # SQLite


def _bucket_index(value: Any, bounds: Sequence[float]) -> Any:
    """CASE WHEN v <= b0 THEN 0 WHEN v <= b1 THEN 1 … ELSE len(bounds): one test per row."""
    return case(*((value <= bound, i) for i, bound in enumerate(bounds)), else_=len(bounds))


class _Histogram:
    """Per-bucket counts (not cumulative) and a sum, folded into Prometheus buckets."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def add(self, index: int, count: int, total: float | None) -> None:
        self.counts[int(index)] += int(count)
        self.total += float(total or 0.0)

    def buckets(self) -> list[tuple[str, float]]:
        cumulative, running = [], 0
        for bound, count in zip([*self.bounds, float("inf")], self.counts, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return cumulative


def _run_latency(now: Any) -> Metric:
    finished = (
        select(_seconds_between(Run.received_at, Run.finished_at).label("seconds"))
        .where(*_recently_finished(now))
        .subquery()
    )
    bucket = _bucket_index(finished.c.seconds, RUN_LATENCY_BUCKETS).label("bucket")
    rows = db.session.execute(
        select(bucket, func.count(), func.sum(finished.c.seconds)).group_by(bucket)
    )
    histogram = _Histogram(RUN_LATENCY_BUCKETS)
    for index, count, total in rows:
        histogram.add(index, count, total)
    return GaugeHistogramMetricFamily(
        "flowgate_run_latency_seconds",
        f"Received to finished, runs that finished in the last {WINDOW_SECONDS // 60} min",
        buckets=histogram.buckets(),
        gsum_value=histogram.total,
    )


def _step_durations(app: Flask, now: Any) -> Metric:
    bucket = _bucket_index(RunStep.duration_ms, [b * 1000 for b in STEP_DURATION_BUCKETS])
    bucket = bucket.label("bucket")
    rows = db.session.execute(
        select(
            Run.flow_version_id,
            RunStep.step_id,
            bucket,
            func.count(),
            func.sum(RunStep.duration_ms),
        )
        .join(Run, Run.id == RunStep.run_id)
        .where(*_recently_finished(now), RunStep.status != StepStatus.SKIPPED.value)
        .group_by(Run.flow_version_id, RunStep.step_id, bucket)
    ).all()
    types = _step_types(app, {row[0] for row in rows})
    by_type = {t: _Histogram(STEP_DURATION_BUCKETS) for t in ("map", "filter", "deliver")}
    for version_id, step_id, index, count, total_ms in rows:
        step_type = types.get(version_id, {}).get(base_step_id(step_id), "unknown")
        histogram = by_type.setdefault(step_type, _Histogram(STEP_DURATION_BUCKETS))
        histogram.add(index, count, (total_ms or 0.0) / 1000)
    family = GaugeHistogramMetricFamily(
        "flowgate_step_duration_seconds",
        f"Step durations by step type, runs that finished in the last {WINDOW_SECONDS // 60} min",
        labels=["type"],
    )
    for step_type in sorted(by_type):
        family.add_metric([step_type], by_type[step_type].buckets(), by_type[step_type].total)
    return family


def _delivery_latency(now: Any) -> Metric:
    """First attempt → acknowledged, retries included, for runs that finished in the window."""
    seconds = _seconds_between(Delivery.created_at, Delivery.acknowledged_at)
    acknowledged = (
        select(seconds.label("seconds"))
        .join(Run, Run.id == Delivery.run_id)
        .where(*_recently_finished(now), Delivery.acknowledged_at.is_not(None))
        .subquery()
    )
    bucket = _bucket_index(acknowledged.c.seconds, RUN_LATENCY_BUCKETS).label("bucket")
    histogram = _Histogram(RUN_LATENCY_BUCKETS)
    rows = db.session.execute(
        select(bucket, func.count(), func.sum(acknowledged.c.seconds)).group_by(bucket)
    )
    for index, count, total in rows:
        histogram.add(index, count, total)
    return GaugeHistogramMetricFamily(
        "flowgate_delivery_latency_seconds",
        "First delivery attempt to acknowledgement (retries included), runs that finished"
        f" in the last {WINDOW_SECONDS // 60} min",
        buckets=histogram.buckets(),
        gsum_value=histogram.total,
    )


def _step_types(app: Flask, version_ids: set[int]) -> dict[int, dict[str, str]]:
    """{version id: {step id: type}}; versions that runs use are immutable, so cache them."""
    cache: dict[int, dict[str, str]] = app.extensions.setdefault(_STEP_TYPES_CACHE, {})
    missing = version_ids - cache.keys()
    if missing:
        if len(cache) + len(missing) > _STEP_TYPES_CACHE_MAX:
            cache.clear()
        rows = db.session.execute(
            select(FlowVersion.id, FlowVersion.definition).where(FlowVersion.id.in_(missing))
        )
        for version_id, definition in rows:
            steps = (definition or {}).get("steps") or []
            cache[version_id] = {
                s["id"]: s.get("type", "unknown")
                for s in steps
                if isinstance(s, dict) and "id" in s
            }
    return {vid: cache.get(vid, {}) for vid in version_ids}


def _breakers(app: Flask, connections: Sequence[tuple[int, str]]) -> list[Metric]:
    labels = ["connection", "connection_id"]
    is_open = GaugeMetricFamily(
        "flowgate_breaker_open", "1 while the connection's circuit breaker is open", labels=labels
    )
    state = GaugeMetricFamily(
        "flowgate_breaker_state",
        "Circuit breaker state per connection: 1 for the current state",
        labels=[*labels, "state"],
    )
    failures = GaugeMetricFamily(
        "flowgate_breaker_consecutive_failures",
        "Consecutive transient delivery failures of the connection",
        labels=labels,
    )
    gate = runtime.delivery_gate(app)
    for connection_id, name in connections:
        current = gate.state(connection_id)
        values = [name, str(connection_id)]
        is_open.add_metric(values, 1 if current.state == "open" else 0)
        for candidate in BREAKER_STATES:
            state.add_metric([*values, candidate], 1 if current.state == candidate else 0)
        failures.add_metric(values, current.consecutive_failures)
    return [is_open, state, failures]
