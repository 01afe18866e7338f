"""Alert rules per flow: defaults derived from the live contract, overrides stored per kind."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from app.errors import Invalid
from app.extensions import db
from app.models import AlertRule, Flow, User, VersionStatus
from app.services import audit
from app.services.flows import version_with_status
from flows import alerting

KINDS = (*alerting.RULE_KINDS, "escalation")


def _overrides(flow_id: int) -> dict[str, dict[str, Any]]:
    rows = db.session.execute(select(AlertRule).where(AlertRule.flow_id == flow_id)).scalars()
    return {r.kind: {**(r.params or {}), "enabled": r.enabled} for r in rows}


def live_contract(flow: Flow) -> dict[str, Any] | None:
    version = version_with_status(flow, VersionStatus.LIVE)
    return version.contract if version is not None else None


def effective_rules(flow_id: int, contract: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Defaults from the contract, then the flow's stored overrides."""
    return alerting.merge_rules(alerting.default_rules(contract), _overrides(flow_id))


def describe_rules(flow: Flow) -> dict[str, Any]:
    contract = live_contract(flow)
    defaults = alerting.default_rules(contract)
    overrides = _overrides(flow.id)
    merged = alerting.merge_rules(defaults, overrides)
    return {
        "flow_id": flow.id,
        "has_contract": contract is not None,
        "rules": [
            {
                "kind": kind,
                "enabled": merged[kind]["enabled"],
                "params": {k: v for k, v in merged[kind].items() if k != "enabled"},
                "defaults": {k: v for k, v in defaults[kind].items() if k != "enabled"},
                "overridden": kind in overrides,
            }
            for kind in KINDS
        ],
    }


def _checked(kind: str, params: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(defaults) - {"enabled"})
    if unknown:
        raise Invalid(f"rule '{kind}' has no parameter(s) {', '.join(unknown)}")
    clean: dict[str, Any] = {}
    for key, value in params.items():
        if key == "enabled":
            continue
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise Invalid(f"rule '{kind}': '{key}' must be a number") from exc
        if number < 0:
            raise Invalid(f"rule '{kind}': '{key}' must not be negative")
        clean[key] = type(defaults[key])(number)
    return clean


def put_rules(flow: Flow, rules: list[dict[str, Any]], actor: User) -> dict[str, Any]:
    """Replace the flow's overrides with ``rules`` (kinds left out go back to defaults)."""
    defaults = alerting.default_rules(live_contract(flow))
    seen: set[str] = set()
    existing = {
        r.kind: r
        for r in db.session.execute(select(AlertRule).where(AlertRule.flow_id == flow.id)).scalars()
    }
    for rule in rules:
        kind = rule["kind"]
        if kind not in KINDS:
            raise Invalid(f"unknown rule kind '{kind}'", kinds=list(KINDS))
        if kind in seen:
            raise Invalid(f"rule '{kind}' is listed twice")
        seen.add(kind)
        params = _checked(kind, rule.get("params") or {}, defaults[kind])
        row = existing.get(kind) or AlertRule(flow_id=flow.id, kind=kind)
        row.enabled = bool(rule.get("enabled", True))
        row.params = params
        db.session.add(row)
    for kind, row in existing.items():
        if kind not in seen:
            db.session.delete(row)
    audit.record(
        actor,
        "alert_rules.updated",
        "flow",
        flow.id,
        rules={
            r["kind"]: {"enabled": r.get("enabled", True), **(r.get("params") or {})} for r in rules
        },
    )
    db.session.commit()
    return describe_rules(flow)
