"""The landscape: systems as nodes, live flows as edges coloured by health, a risk ranking.

An edge goes from a flow's source system (its contract's ``source_system_id``, else the
system of its trigger connection) to each destination system (the system of each deliver
step's connection, plus the contract's ``destination_system_ids``). A flow whose source is
unknown starts at the synthetic node ``unknown`` so it still shows on the map.

Cost: three queries over ``runs`` (GROUP BY flow and status, on the ``received_at`` and
``(flow_id, status)`` indexes), one over flows/versions/systems/connections, and one Redis
read per destination connection for its breaker.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from app import runtime
from app.extensions import db
from app.models import Connection, Flow, Run, System, VersionStatus
from app.models._types import utcnow
from flows import landscape as rules
from flows.results import RunStatus

HEALTH_WINDOW = timedelta(hours=1)
RISK_WINDOW = timedelta(hours=24)
UNKNOWN = "unknown"
_FAILED = (RunStatus.DEAD_LETTERED.value, RunStatus.REJECTED.value)
_PENDING_REVIEW = (VersionStatus.DRAFT.value, VersionStatus.IN_REVIEW.value)
_BREAKER_RANK = {"closed": 0, "half_open": 1, "open": 2}


@dataclass
class Integration:
    """One live flow, resolved against the inventory."""

    flow: Flow
    version: Any
    source_id: int | None
    destinations: dict[int, set[int]] = field(default_factory=dict)  # system → connection ids
    contract: dict[str, Any] | None = None


def window_counts(since: datetime) -> dict[int, rules.WindowCounts]:
    """Runs received since ``since``, per flow, by outcome (one GROUP BY)."""
    rows = db.session.execute(
        select(Run.flow_id, Run.status, func.count())
        .where(Run.received_at >= since)
        .group_by(Run.flow_id, Run.status)
    )
    by_flow: dict[int, dict[str, int]] = defaultdict(dict)
    for flow_id, status, count in rows:
        by_flow[flow_id][status] = count
    return {flow_id: to_counts(statuses) for flow_id, statuses in by_flow.items()}


def to_counts(statuses: dict[str, int]) -> rules.WindowCounts:
    return rules.WindowCounts(
        succeeded=statuses.get(RunStatus.SUCCEEDED.value, 0),
        filtered=statuses.get(RunStatus.FILTERED.value, 0),
        failed=sum(statuses.get(s, 0) for s in _FAILED),
        retrying=statuses.get(RunStatus.RETRYING.value, 0),
        waiting=statuses.get(RunStatus.QUEUED.value, 0) + statuses.get(RunStatus.RUNNING.value, 0),
    )


def breaker_states(connection_ids: set[int]) -> dict[int, str]:
    """closed / half_open / open per connection; unknown (Redis down) counts as closed."""
    gate = runtime.delivery_gate(current_app._get_current_object())
    states = {}
    for connection_id in connection_ids:
        try:
            states[connection_id] = gate.state(connection_id).state
        except Exception:  # the map must render without Redis; the breaker shows as closed
            states[connection_id] = "closed"
    return states


def worst_breaker(states: list[str]) -> str:
    return max(states, key=lambda s: _BREAKER_RANK.get(s, 0), default="closed")


def live_integrations() -> list[Integration]:
    flows = db.session.execute(
        select(Flow)
        .options(selectinload(Flow.versions), selectinload(Flow.owner))
        .order_by(Flow.name)
    ).scalars()
    connections = dict(db.session.execute(select(Connection.id, Connection.system_id)).all())
    result = []
    for flow in flows:
        live = next((v for v in reversed(flow.versions) if v.status == VersionStatus.LIVE), None)
        if live is None:
            continue
        contract = getattr(live, "contract", None)
        contract = contract if isinstance(contract, dict) else None
        definition = live.definition or {}
        trigger = definition.get("trigger") or {}
        source = contract.get("source_system_id") if contract else None
        if not isinstance(source, int):
            source = connections.get(trigger.get("connection_id"))
        integration = Integration(flow, live, source, contract=contract)
        for step in definition.get("steps") or []:
            if not isinstance(step, dict) or step.get("type") != "deliver":
                continue
            connection_id = step.get("connection_id")
            system_id = connections.get(connection_id)
            if system_id is not None:
                integration.destinations.setdefault(system_id, set()).add(connection_id)
        for system_id in (contract or {}).get("destination_system_ids") or []:
            if isinstance(system_id, int):
                integration.destinations.setdefault(system_id, set())
        result.append(integration)
    return result


def landscape() -> dict[str, Any]:
    now = utcnow()
    systems = list(
        db.session.execute(
            select(System).options(selectinload(System.owner)).order_by(System.kind, System.name)
        ).scalars()
    )
    by_id = {s.id: s for s in systems}
    integrations = live_integrations()
    health = window_counts(now - HEALTH_WINDOW)
    recent = window_counts(now - RISK_WINDOW)
    breakers = breaker_states(
        {c for i in integrations for conns in i.destinations.values() for c in conns}
    )
    nodes = [_node(s) for s in systems]
    edges = []
    unknown_used = False
    for integration in integrations:
        source = integration.source_id if integration.source_id in by_id else None
        unknown_used |= source is None
        counts = health.get(integration.flow.id, rules.WindowCounts())
        for system_id, connection_ids in sorted(integration.destinations.items()):
            if system_id not in by_id:
                continue
            breaker = worst_breaker([breakers.get(c, "closed") for c in connection_ids])
            verdict = rules.edge_health(counts, breaker)
            source_name = by_id[source].name if source else "Unknown source"
            edges.append(
                {
                    "id": f"{integration.flow.id}:{source or UNKNOWN}:{system_id}",
                    "flow_id": integration.flow.id,
                    "flow_name": integration.flow.name,
                    "flow_slug": integration.flow.slug,
                    "source": str(source) if source else UNKNOWN,
                    "target": str(system_id),
                    "health": verdict.status,
                    "health_label": verdict.label,
                    "reason": verdict.reason,
                    "breaker": breaker,
                    "counts": counts.__dict__,
                    "label": f"{source_name} → {by_id[system_id].name}: {verdict.label}",
                }
            )
    if unknown_used:
        nodes.append(
            {
                "id": UNKNOWN,
                "system_id": None,
                "name": "Unknown source",
                "kind": "other",
                "criticality": None,
                "owner": None,
            }
        )
    risks = sorted(
        (_risk_row(i, by_id, recent, now) for i in integrations),
        key=lambda row: (-row["score"], row["flow_name"]),
    )
    return {
        "generated_at": now,
        "window_seconds": int(HEALTH_WINDOW.total_seconds()),
        "nodes": nodes,
        "edges": edges,
        "risks": risks,
    }


def _node(system: System) -> dict[str, Any]:
    return {
        "id": str(system.id),
        "system_id": system.id,
        "name": system.name,
        "kind": system.kind,
        "criticality": system.criticality,
        "owner": system.owner.email if system.owner else None,
    }


def risk_facts(
    integration: Integration, by_id: dict[int, System], counts: rules.WindowCounts, now: datetime
) -> rules.RiskFacts:
    contract = integration.contract or {}
    flow = integration.flow
    touched = [integration.source_id, *integration.destinations]
    weights = [
        by_id[s].criticality for s in touched if s in by_id
    ]  # the most critical system it touches
    criticality = max(weights, key=lambda c: rules.CRITICALITY_WEIGHT.get(c, 0), default="medium")
    delivers = [
        s
        for s in (integration.version.definition or {}).get("steps") or []
        if isinstance(s, dict) and s.get("type") == "deliver"
    ]
    has_policy = bool(contract.get("error_policy")) or (
        bool(delivers) and all(isinstance(s.get("retry"), dict) for s in delivers)
    )
    has_pii = any(isinstance(f, dict) and f.get("pii") for f in contract.get("fields") or [])
    unreviewed = any(
        v.status in _PENDING_REVIEW and v.number > integration.version.number for v in flow.versions
    )
    since = integration.version.live_since or integration.version.decided_at
    days = (now - since).total_seconds() / 86400 if since else None
    return rules.RiskFacts(
        criticality=criticality,
        failure_rate=counts.failure_rate,
        has_owner=bool(
            flow.owner_id or contract.get("business_owner_id") or contract.get("technical_owner_id")
        ),
        has_error_policy=has_policy,
        has_pii=has_pii,
        unreviewed_changes=unreviewed,
        days_since_change=days,
    )


def _risk_row(
    integration: Integration,
    by_id: dict[int, System],
    recent: dict[int, rules.WindowCounts],
    now: datetime,
) -> dict[str, Any]:
    counts = recent.get(integration.flow.id, rules.WindowCounts())
    facts = risk_facts(integration, by_id, counts, now)
    scored = rules.risk(facts)
    source = by_id.get(integration.source_id) if integration.source_id else None
    return {
        "flow_id": integration.flow.id,
        "flow_name": integration.flow.name,
        "source": source.name if source else None,
        "destinations": [by_id[s].name for s in sorted(integration.destinations) if s in by_id],
        "score": scored.score,
        "factors": [f.__dict__ for f in scored.factors],
    }


# --- export ------------------------------------------------------------------------------

SYSTEM_COLUMNS = ("id", "name", "kind", "criticality", "owner", "notes")
INTEGRATION_COLUMNS = (
    "flow_id",
    "flow",
    "slug",
    "version",
    "source_system",
    "destination_systems",
    "owner",
    "business_objects",
    "pii",
    "error_policy",
    "live_since",
    "risk_score",
)


def inventory() -> dict[str, list[dict[str, Any]]]:
    """Systems and integrations as plain rows (no connection configs, no secrets)."""
    now = utcnow()
    systems = list(
        db.session.execute(
            select(System).options(selectinload(System.owner)).order_by(System.name)
        ).scalars()
    )
    by_id = {s.id: s for s in systems}
    recent = window_counts(now - RISK_WINDOW)
    system_rows = [
        {
            "id": s.id,
            "name": s.name,
            "kind": s.kind,
            "criticality": s.criticality,
            "owner": s.owner.email if s.owner else None,
            "notes": s.notes,
        }
        for s in systems
    ]
    integration_rows = []
    for i in live_integrations():
        contract = i.contract or {}
        facts = risk_facts(i, by_id, recent.get(i.flow.id, rules.WindowCounts()), now)
        integration_rows.append(
            {
                "flow_id": i.flow.id,
                "flow": i.flow.name,
                "slug": i.flow.slug,
                "version": i.version.number,
                "source_system": by_id[i.source_id].name if i.source_id in by_id else None,
                "destination_systems": [
                    by_id[s].name for s in sorted(i.destinations) if s in by_id
                ],
                "owner": i.flow.owner.email if i.flow.owner else None,
                "business_objects": list(contract.get("business_objects") or []),
                "pii": facts.has_pii,
                "error_policy": facts.has_error_policy,
                "live_since": i.version.live_since.isoformat() + "Z"
                if i.version.live_since
                else None,
                "risk_score": rules.risk(facts).score,
            }
        )
    return {"systems": system_rows, "integrations": integration_rows}


def inventory_csv(table: str) -> str:
    """One CSV table: ``systems`` or ``integrations`` (lists joined with "; ")."""
    data = inventory()
    columns = SYSTEM_COLUMNS if table == "systems" else INTEGRATION_COLUMNS
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in data[table]:
        writer.writerow({k: _csv_cell(row.get(k)) for k in columns})
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list):
        value = "; ".join(str(v) for v in value)
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value  # no formula injection when the CSV is opened in a spreadsheet
    return value
