"""Alert evaluation: evaluate every live flow's rules, open/dedupe/auto-resolve alerts, route them.

One evaluation (``evaluate``, called by the scheduler every FLOWGATE_ALERT_INTERVAL_SECONDS
under a Redis lock so two schedulers never double-alert) reads the ledger with a handful of
aggregate queries for all flows at once, asks :mod:`flows.alerting` for a verdict per rule,
and then per flow and rule kind:

- firing and no active alert → open one (summary naming the flow, the failing system and
  the last error; a link to the failing run) and notify the technical owner (e-mail +
  in-app) and the global chat webhook FLOWGATE_ALERT_WEBHOOK_URL;
- firing, still ``open`` after the flow's ``escalation.after_minutes`` → escalate to the
  contract's on-call contact (e-mail + its webhook) once;
- not firing and an active (open or acknowledged) alert → resolve it (``auto``).

Notifications are queued in the outbox in the same transaction as the alert changes, logged
as ``AlertNotification`` rows, and sent right after the commit (retries: the outbox tick).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import and_, case, func, or_, select

from app import runtime
from app.extensions import db
from app.models import (
    Alert,
    AlertState,
    Connection,
    Delivery,
    Flow,
    FlowVersion,
    Run,
    RunStep,
    System,
    VersionStatus,
)
from app.models._types import utcnow
from app.services import alert_notify, outbox
from app.services.alert_rules import effective_rules
from flows import alerting
from flows.alerting import BreakerView, BusinessHours, Finding, RunOutcome
from flows.results import DeliveryStatus, RunStatus, StepStatus

log = logging.getLogger("flowgate.alerts")

ACTIVE = (AlertState.OPEN.value, AlertState.ACKNOWLEDGED.value)
_FAILED = (RunStatus.DEAD_LETTERED.value, RunStatus.RETRYING.value)
_COUNTED = (*_FAILED, RunStatus.SUCCEEDED.value, RunStatus.FILTERED.value)
_FAILURE_KINDS = ("consecutive_failures", "failure_rate", "dead_letter_growth", "latency_p95")
OUTCOME_LOOKBACK = timedelta(hours=24)
MAX_STREAK = 50
_RANK = {"critical": 0, "high": 1, "warning": 2}
OUTCOME_SCAN = 200  # newest runs read per flow to find the newest finished ones


@dataclass
class FlowFacts:
    """Everything the rules of one flow need, gathered for all flows at once."""

    flow: Flow
    version: FlowVersion
    rules: dict[str, dict[str, Any]]
    outcomes: list[RunOutcome] = field(default_factory=list)
    rate: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    latencies: list[float] = field(default_factory=list)
    last_received_at: datetime | None = None
    breakers: list[BreakerView] = field(default_factory=list)


def _live_versions() -> list[FlowVersion]:
    return list(
        db.session.execute(
            select(FlowVersion)
            .join(Flow)
            .where(FlowVersion.status == VersionStatus.LIVE.value)
            .order_by(FlowVersion.flow_id)
        ).scalars()
    )


def _destination_ids(version: FlowVersion) -> list[int]:
    return [
        int(s["connection_id"])
        for s in (version.definition or {}).get("steps", [])
        if s.get("type") == "deliver" and s.get("connection_id") is not None
    ]


def _outcomes(flow_ids: list[int], now: datetime, depth: int) -> dict[int, list[RunOutcome]]:
    """The newest ``depth`` counted runs per flow: one short walk of ``ix_runs_flow_received``
    per flow (no status condition in SQL, which would make the planner read every run of the
    flow through the status index), so the cost follows the number of flows, not the traffic.
    Runs still queued or running are skipped (up to a backlog of ``OUTCOME_SCAN``)."""
    found: dict[int, list[RunOutcome]] = defaultdict(list)
    for flow_id in flow_ids:
        rows = db.session.execute(
            select(Run.id, Run.received_at, Run.status)
            .where(Run.flow_id == flow_id, Run.received_at >= now - OUTCOME_LOOKBACK)
            .order_by(Run.received_at.desc())
            .limit(depth + OUTCOME_SCAN)
        ).all()
        counted = [r for r in rows if r.status in _COUNTED][:depth]
        found[flow_id] = [RunOutcome(r.id, r.received_at, r.status in _FAILED) for r in counted]
    return found


def _status_counts(flow_ids: list[int], since: datetime) -> dict[int, dict[str, int]]:
    rows = db.session.execute(
        select(Run.flow_id, Run.status, func.count())
        .where(Run.flow_id.in_(flow_ids), Run.received_at >= since, Run.status.in_(_COUNTED))
        .group_by(Run.flow_id, Run.status)
    ).all()
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for flow_id, status, count in rows:
        counts[flow_id][status] = count
    return counts


def _new_dead_letters(flow_ids: list[int], since: datetime) -> dict[int, int]:
    """Runs dead-lettered since ``since``. Filtered on ``finished_at`` alone and counted
    here: any status condition or GROUP BY lets SQLite's planner prefer a status index and
    read every dead letter ever kept; this walks ``ix_runs_finished_at`` (recent traffic)."""
    rows = db.session.execute(
        select(Run.flow_id, Run.status).where(Run.finished_at >= since).limit(200_000)
    ).all()
    wanted = set(flow_ids)
    counts: dict[int, int] = defaultdict(int)
    for flow_id, status in rows:
        if status == RunStatus.DEAD_LETTERED.value and flow_id in wanted:
            counts[flow_id] += 1
    return dict(counts)


def _latencies(flow_ids: list[int], since: datetime) -> dict[int, list[float]]:
    rows = db.session.execute(
        select(Run.flow_id, Run.received_at, Run.finished_at)
        .where(
            Run.flow_id.in_(flow_ids),
            Run.status == RunStatus.SUCCEEDED.value,
            Run.finished_at >= since,
            # bounds the scan through the received_at index (like app.metrics)
            Run.received_at >= since - timedelta(hours=1),
        )
        .limit(20_000)
    ).all()
    found: dict[int, list[float]] = defaultdict(list)
    for flow_id, received, finished in rows:
        found[flow_id].append(max(0.0, (finished - received).total_seconds()))
    return found


def _last_received(flow_ids: list[int]) -> dict[int, datetime]:
    """Newest ``received_at`` per flow: a correlated MAX per flow is one index seek each
    (a GROUP BY would read the whole index)."""
    newest = select(func.max(Run.received_at)).where(Run.flow_id == Flow.id).scalar_subquery()
    rows = db.session.execute(select(Flow.id, newest).where(Flow.id.in_(flow_ids))).all()
    return {flow_id: at for flow_id, at in rows if at is not None}


def _breakers(app: Flask, facts: list[FlowFacts]) -> None:
    wanted = {cid: f for f in facts for cid in _destination_ids(f.version)}
    if not wanted:
        return
    rows = db.session.execute(
        select(Connection.id, Connection.name, System.name)
        .outerjoin(System, Connection.system_id == System.id)
        .where(Connection.id.in_(wanted))
    ).all()
    gate = runtime.delivery_gate(app)
    names = {cid: (name, system) for cid, name, system in rows}
    for f in facts:
        for cid in _destination_ids(f.version):
            if cid not in names:
                continue
            state = gate.state(cid)
            f.breakers.append(
                BreakerView(
                    cid, names[cid][0], names[cid][1], state.state, state.consecutive_failures
                )
            )


def gather(app: Flask, now: datetime) -> list[FlowFacts]:
    """Facts for every live flow: one query per measure, not per flow."""
    versions = _live_versions()
    if not versions:
        return []
    facts = [FlowFacts(v.flow, v, effective_rules(v.flow_id, v.contract)) for v in versions]
    ids = [f.flow.id for f in facts]
    depth = min(MAX_STREAK, max(int(f.rules["consecutive_failures"]["threshold"]) for f in facts))
    outcomes = _outcomes(ids, now, depth)
    last = _last_received(ids)
    windows = {int(f.rules["failure_rate"]["window_minutes"]) for f in facts}
    rates = {w: _status_counts(ids, now - timedelta(minutes=w)) for w in windows}
    dl_windows = {int(f.rules["dead_letter_growth"]["window_minutes"]) for f in facts}
    dead = {w: _new_dead_letters(ids, now - timedelta(minutes=w)) for w in dl_windows}
    lat_windows = {int(f.rules["latency_p95"]["window_minutes"]) for f in facts}
    lats = {w: _latencies(ids, now - timedelta(minutes=w)) for w in lat_windows}
    for f in facts:
        fid = f.flow.id
        f.outcomes = outcomes.get(fid, [])
        f.last_received_at = last.get(fid)
        f.rate = rates[int(f.rules["failure_rate"]["window_minutes"])].get(fid, {})
        f.dead_letters = dead[int(f.rules["dead_letter_growth"]["window_minutes"])].get(fid, 0)
        f.latencies = lats[int(f.rules["latency_p95"]["window_minutes"])].get(fid, [])
    _breakers(app, facts)
    return facts


def _volume(f: FlowFacts, now: datetime) -> Finding:
    rule = f.rules["volume_anomaly"]
    hours = BusinessHours.from_contract(f.version.contract)
    current, previous = alerting.volume_windows(
        now, hours.timezone if hours else "UTC", int(rule["weeks"])
    )
    # The last complete hour does not change until the next one: count it once per hour
    # (per app: the scheduler keeps one for its lifetime).
    cache = current_app.extensions.setdefault("flowgate.alert_volume_counts", {})
    key = (f.flow.id, f.version.id, current[0], int(rule["weeks"]))
    if key not in cache:
        if len(cache) > 10_000:
            cache.clear()
        cache[key] = _volume_counts(f.flow.id, [current, *previous])
    counts = cache[key]
    return alerting.volume_anomaly(counts[0], counts[1:], rule)


def _volume_counts(flow_id: int, windows: list[tuple[datetime, datetime]]) -> list[int]:
    columns = [
        func.sum(case((and_(Run.received_at >= lo, Run.received_at < hi), 1), else_=0))
        for lo, hi in windows
    ]
    row = db.session.execute(
        select(*columns).where(
            Run.flow_id == flow_id,
            or_(*(and_(Run.received_at >= lo, Run.received_at < hi) for lo, hi in windows)),
        )
    ).one()
    return [int(c or 0) for c in row]


def findings(f: FlowFacts, now: datetime) -> list[Finding]:
    """The verdict of each enabled rule of one flow."""
    rules = f.rules
    failed = sum(f.rate.get(s, 0) for s in _FAILED)
    total = sum(f.rate.values())
    since = f.version.live_since or f.version.created_at
    checks = {
        "consecutive_failures": lambda: alerting.consecutive_failures(
            f.outcomes, int(rules["consecutive_failures"]["threshold"])
        ),
        "failure_rate": lambda: alerting.failure_rate(failed, total, rules["failure_rate"]),
        "latency_p95": lambda: alerting.latency_p95(f.latencies, rules["latency_p95"]),
        # Without declared business hours silence is off by default; an owner who enables it
        # anyway gets it watched around the clock.
        "silence": lambda: alerting.silence(
            f.last_received_at,
            now,
            BusinessHours.from_contract(f.version.contract) or BusinessHours.always(),
            rules["silence"],
            since=since,
        ),
        "volume_anomaly": lambda: _volume(f, now),
        "dead_letter_growth": lambda: alerting.dead_letter_growth(
            f.dead_letters, rules["dead_letter_growth"]
        ),
        "breaker_open": lambda: alerting.breaker_open(f.breakers),
    }
    out = []
    for kind in alerting.RULE_KINDS:
        if rules[kind]["enabled"]:
            out.append(checks[kind]())
        else:
            out.append(Finding(kind, False, details={"disabled": True}))
    return out


# -- what failed, where ------------------------------------------------------------------


def _culprit(f: FlowFacts) -> dict[str, Any]:
    """The latest failing delivery or step of the flow: its run, system and error."""
    row = db.session.execute(
        select(Delivery.run_id, Delivery.step_id, Delivery.last_error, Delivery.response_code)
        .join(Run, Run.id == Delivery.run_id)
        .where(
            Run.flow_id == f.flow.id,
            Delivery.status.in_(
                (DeliveryStatus.RETRYING.value, DeliveryStatus.DEAD_LETTERED.value)
            ),
            Delivery.last_error.is_not(None),
        )
        .order_by(Delivery.updated_at.desc(), Delivery.id.desc())
        .limit(1)
    ).first()
    if row is not None:
        step_id, error, run_id = row.step_id, row.last_error, row.run_id
    else:
        step = db.session.execute(
            select(RunStep.run_id, RunStep.step_id, RunStep.error)
            .join(Run, Run.id == RunStep.run_id)
            .where(
                Run.flow_id == f.flow.id,
                Run.status.in_(_FAILED),
                RunStep.status.in_((StepStatus.FAILED.value, StepStatus.RETRYING.value)),
            )
            .order_by(Run.received_at.desc(), Run.id.desc())
            .limit(1)
        ).first()
        if step is None:
            return {}
        step_id, run_id = step.step_id, step.run_id
        error = (step.error or {}).get("message")
    return {"run_id": run_id, "step_id": step_id, "error": error, **_system_of(f, step_id)}


def _started(f: FlowFacts, finding: Finding, now: datetime) -> datetime:
    if finding.first_failure_at is not None:
        return finding.first_failure_at
    if finding.kind in (*_FAILURE_KINDS, "breaker_open"):
        return _first_failure(f, now) or now
    return now


def _first_failure(f: FlowFacts, now: datetime) -> datetime | None:
    """When the current incident began (for MTTD): the oldest failing run received after
    the newest success seen (at most an hour back)."""
    last_ok = next((o.received_at for o in f.outcomes if not o.failed), None)
    since = max(last_ok or now - timedelta(hours=1), now - timedelta(hours=1))
    return db.session.execute(
        select(func.min(Run.received_at)).where(
            Run.flow_id == f.flow.id, Run.received_at > since, Run.status.in_(_FAILED)
        )
    ).scalar()


def _system_of(f: FlowFacts, step_id: str) -> dict[str, Any]:
    step = next(
        (s for s in (f.version.definition or {}).get("steps", []) if s.get("id") == step_id), {}
    )
    cid = step.get("connection_id")
    if cid is None:
        return {"system": "Flowgate (step " + step_id + ")", "connection": None}
    row = db.session.execute(
        select(Connection.name, System.name)
        .outerjoin(System, Connection.system_id == System.id)
        .where(Connection.id == cid)
    ).first()
    if row is None:
        return {"system": None, "connection": None}
    return {"system": row[1] or row[0], "connection": row[0]}


def _source_system(f: FlowFacts) -> str | None:
    sid = (f.version.contract or {}).get("source_system_id")
    system = db.session.get(System, sid) if sid else None
    return system.name if system else None


def _describe(f: FlowFacts, finding: Finding) -> dict[str, Any]:
    culprit: dict[str, Any] = {}
    if finding.kind in _FAILURE_KINDS:
        culprit = _culprit(f)
    elif finding.kind == "breaker_open":
        tripped = finding.details.get("connections") or [{}]
        culprit = _culprit(f)
        view = next((b for b in f.breakers if b.connection_id == tripped[0].get("id")), None)
        if view is not None:
            culprit["system"] = view.system_name or view.connection_name
    elif finding.kind in ("silence", "volume_anomaly"):
        culprit = {"system": _source_system(f), "error": finding.summary}
    system = culprit.get("system") or "unknown system"
    error = culprit.get("error") or finding.summary
    summary = f"{f.flow.name}: {finding.summary} — failing system: {system}; error: {error}"
    return {
        "summary": summary[:2000],
        "system": culprit.get("system"),
        "error": (error or "")[:2000],
        "run_id": culprit.get("run_id") or finding.run_id,
        "step_id": culprit.get("step_id"),
    }


# -- the tick ----------------------------------------------------------------------------


def _active_alerts(flow_ids: list[int]) -> dict[tuple[int, str], Alert]:
    rows = db.session.execute(
        select(Alert).where(Alert.flow_id.in_(flow_ids), Alert.state.in_(ACTIVE))
    ).scalars()
    return {(a.flow_id, a.kind): a for a in rows}


def _apply(
    f: FlowFacts, finding: Finding, active: Alert | None, now: datetime
) -> tuple[Alert, str] | None:
    """Open, escalate or resolve; returns the alert and what to notify, if anything."""
    if finding.firing and active is None:
        described = _describe(f, finding)
        alert = Alert(
            flow_id=f.flow.id,
            kind=finding.kind,
            state=AlertState.OPEN.value,
            severity=finding.severity,
            summary=described["summary"],
            details={**finding.details, "step_id": described["step_id"]},
            system_name=described["system"],
            last_error=described["error"],
            run_id=described["run_id"],
            opened_at=now,
            first_failure_at=min(_started(f, finding, now), now),
        )
        db.session.add(alert)
        return alert, "opened"
    if finding.firing and active is not None:
        active.details = {**(active.details or {}), **finding.details}
        after = int(f.rules["escalation"]["after_minutes"])
        if (
            f.rules["escalation"]["enabled"]
            and active.state == AlertState.OPEN.value
            and active.escalated_at is None
            and now - active.opened_at >= timedelta(minutes=after)
        ):
            active.escalated_at = now
            return active, "escalated"
        return None
    if not finding.firing and active is not None:
        active.state = AlertState.RESOLVED.value
        active.resolved_at = now
        active.resolution = "auto"
        return active, "resolved"
    return None


def _close_orphans(live_flow_ids: list[int], now: datetime) -> None:
    """Alerts of flows that are no longer live have nothing left to watch: resolve them."""
    stale = db.session.execute(
        select(Alert).where(
            Alert.state.in_(ACTIVE),
            Alert.kind != "reconciliation",
            Alert.flow_id.not_in(live_flow_ids or [0]),
        )
    ).scalars()
    for alert in stale:
        alert.state, alert.resolved_at, alert.resolution = AlertState.RESOLVED.value, now, "auto"
        alert.details = {**(alert.details or {}), "note": "the flow is no longer live"}


def evaluate(app: Flask, now: datetime | None = None) -> dict[str, int]:
    """One evaluation of every live flow; returns counts of what changed."""
    now = now or utcnow()
    facts = gather(app, now)
    active = _active_alerts([f.flow.id for f in facts])
    changes: list[tuple[FlowFacts, Alert, str]] = []
    for f in facts:
        for finding in findings(f, now):
            change = _apply(f, finding, active.get((f.flow.id, finding.kind)), now)
            if change is not None:
                changes.append((f, *change))
    _close_orphans([f.flow.id for f in facts], now)
    db.session.flush()  # alert ids for the notifications, committed together below
    counts = {"opened": 0, "escalated": 0, "resolved": 0}
    # One outage trips several rules at once (consecutive failures, breaker, failure rate):
    # per flow and purpose, the most severe alert is sent and names the others.
    groups: dict[tuple[int, str], list[tuple[FlowFacts, Alert]]] = defaultdict(list)
    for f, alert, purpose in changes:
        counts[purpose] += 1
        log.info(
            "alerts.%s alert_id=%s flow_id=%s kind=%s", purpose, alert.id, alert.flow_id, alert.kind
        )
        groups[(alert.flow_id, purpose)].append((f, alert))
    for (_, purpose), members in groups.items():
        members.sort(key=lambda m: (_RANK.get(m[1].severity, 9), m[1].id))
        (f, lead), others = members[0], [m[1] for m in members[1:]]
        alert_notify.route(lead, f.version.contract, purpose, also=others)
    db.session.commit()
    if changes:  # the first attempt at once: the owner hears within one evaluation
        outbox.deliver_due(app)
    return counts


def tick(app: Flask) -> dict[str, int] | None:
    """The scheduler's entry point: evaluate unless another scheduler just did."""
    from app.redis_conn import get_redis

    interval = float(app.config["FLOWGATE_ALERT_INTERVAL_SECONDS"])
    key = f"flowgate:{runtime.idempotency_prefix(app)}:alerts:tick"
    # Expires a little before the next beat: one evaluation per interval across schedulers.
    if not get_redis(app).set(key, "1", nx=True, px=max(int(interval * 900), 100)):
        return None
    return evaluate(app)
