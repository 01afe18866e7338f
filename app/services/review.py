"""The review page of a flow version, and the checks that gate submission and approval.

Everything is computed by ``flows.review`` (pure); this module looks up what it needs: the
live version to diff against, connection configs, the flow's owner, the egress policy and
the sandboxed JSONata evaluator (analyst expressions never run unbounded in the web process).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app import runtime
from app.errors import Invalid
from app.extensions import db
from app.models import Connection, FlowVersion, VersionStatus
from app.services import comments, contracts
from app.services.flows import get_version, version_with_status
from flows import review


def _evaluator() -> Any:
    evaluator = runtime.mapping_evaluator()
    # Start the children now so a cold start is not billed to the first expression's cost.
    warm_up = getattr(evaluator, "warm_up", None)
    if warm_up is not None:
        warm_up()
    return evaluator


def _connection_configs(doc: dict[str, Any]) -> dict[int, dict[str, Any]]:
    ids = {s["connection_id"] for s in doc.get("steps", []) if s.get("connection_id") is not None}
    if not ids:
        return {}
    rows = db.session.execute(select(Connection).where(Connection.id.in_(ids))).scalars()
    return {row.id: dict(row.config or {}) for row in rows}


def _declared_idempotency() -> dict[str, str]:
    """Connector key → the idempotency its spec declares ("key", "upsert", "none")."""
    return {spec.key: spec.idempotency for spec in runtime.registry().specs()}


def checks(version: FlowVersion) -> dict[str, Any]:
    """Sample tests, dry runs, guardrails and per-destination idempotency of ``version``."""
    doc = version.definition or {}
    evaluator = _evaluator()
    tests = review.run_sample_tests(doc, evaluator)
    runs = review.dry_run(doc, evaluator)
    declared = _declared_idempotency()
    found = review.guardrails(
        doc,
        has_owner=version.flow.owner_id is not None,
        connections=_connection_configs(doc),
        egress=runtime.egress_policy(),
        sample_tests=tests,
        dry_runs=runs,
        idempotency=declared,
    )
    # The integration contract: complete, owners named, an alert route, PII only where declared.
    found += contracts.guardrails(version)
    return {
        "guardrails": [g.to_dict() for g in found],
        "blocking": [g.to_dict() for g in review.blocking(found)],
        "sample_tests": tests,
        "dry_run": runs,
        "idempotency": review.destination_idempotency(doc, declared),
    }


def review_page(flow_id: int, number: int) -> dict[str, Any]:
    version = get_version(flow_id, number)
    live = version_with_status(version.flow, VersionStatus.LIVE)
    against = live if live is not None and live.id != version.id else None
    result = checks(version)
    return {
        "version": version,
        "diff_against": against.number if against is not None else None,
        "diff": review.semantic_diff(against.definition if against else None, version.definition),
        "approvable": not result["blocking"],
        **contracts.review_view(version, against),
        "comments": comments.list_comments(flow_id, number),
        **result,
    }


def refuse_failing_sample_tests(version: FlowVersion) -> None:
    """On submit: 422 listing the failing sample tests, if any."""
    tests = review.run_sample_tests(version.definition or {}, runtime.mapping_evaluator())
    failing = [t for t in tests if t["status"] != review.PASS]
    if failing:
        raise Invalid(
            f"{len(failing)} sample test(s) fail; fix the mapping or the expected output"
            " before submitting: " + ", ".join(str(t["name"]) for t in failing),
            sample_tests=failing,
        )


def refuse_blocked_approval(version: FlowVersion) -> None:
    """On approve: 422 listing every failing guardrail (failing sample tests included)."""
    result = checks(version)
    if result["blocking"]:
        failing_tests = [t for t in result["sample_tests"] if t["status"] != review.PASS]
        raise Invalid(
            "the version fails guardrails and cannot be approved: "
            + "; ".join(
                f"{g['id']}{' (' + g['step'] + ')' if g['step'] else ''}: {g['message']}"
                for g in result["blocking"]
            ),
            guardrails=result["blocking"],
            sample_tests=failing_tests,
        )
