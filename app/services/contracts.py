"""Integration contracts of flow versions: saving them on drafts, checking them at submit,
and what the review page shows (the diff against the live contract, the contract guardrails).

The rules live in ``flows.contract`` (pure); this module checks the references (systems and
users must exist) and maps each destination step to its connection's system.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.errors import Conflict, Invalid
from app.extensions import db
from app.models import Connection, FlowVersion, System, User, VersionStatus
from app.models._types import utcnow
from app.services import audit
from flows import contract as rules


def reference_problems(contract: dict[str, Any] | None) -> list[rules.ContractProblem]:
    system_ids, user_ids = rules.referenced_ids(contract)
    found = []
    if system_ids:
        known = set(
            db.session.execute(select(System.id).where(System.id.in_(system_ids))).scalars()
        )
        for missing in sorted(system_ids - known):
            found.append(
                rules.ContractProblem("systems", "invalid", f"system {missing} does not exist")
            )
    if user_ids:
        known = set(db.session.execute(select(User.id).where(User.id.in_(user_ids))).scalars())
        for missing in sorted(user_ids - known):
            found.append(
                rules.ContractProblem("users", "invalid", f"user {missing} does not exist")
            )
    return found


def check_draft_contract(contract: dict[str, Any] | None) -> None:
    """While drafting: the types of what is filled in, and the references, are right."""
    found = rules.problems(contract, complete=False) + reference_problems(contract)
    if found:
        raise Invalid(
            f"the integration contract has {len(found)} problem(s)",
            contract_problems=[p.to_dict() for p in found],
        )


def require_complete(contract: dict[str, Any] | None) -> None:
    """At submit: 422 listing every missing field (``missing``) and every other problem."""
    found = rules.problems(contract, complete=True)
    found += reference_problems(contract)
    if found:
        missing = rules.missing_fields(found)
        detail = "the integration contract is incomplete or invalid"
        if missing:
            detail += "; missing: " + ", ".join(missing)
        raise Invalid(detail, missing=missing, contract_problems=[p.to_dict() for p in found])


def save_contract(version: FlowVersion, contract: dict[str, Any] | None, actor: User) -> bool:
    """Store ``contract`` on a draft (no commit); True if it changed. The editor counts as a
    contributor (four-eyes): whoever shapes what is reviewed cannot approve it."""
    if version.status != VersionStatus.DRAFT.value:
        raise Conflict(
            f"version {version.number} is {version.status}; a submitted version is immutable"
        )
    check_draft_contract(contract)
    if contract == version.contract:
        return False
    version.contract = contract
    version.updated_at = utcnow()
    if actor.id not in (version.contributor_ids or []):
        version.contributor_ids = [*(version.contributor_ids or []), actor.id]
    return True


def update_contract(version: FlowVersion, contract: dict[str, Any] | None, actor: User) -> None:
    if save_contract(version, contract, actor):
        audit.record(
            actor,
            "flow.contract_saved",
            "flow_version",
            version.id,
            flow_id=version.flow_id,
            number=version.number,
        )
    db.session.commit()


def destination_systems(definition: dict[str, Any]) -> dict[str, int | None]:
    """Destination step id → the system of its connection (None: unknown or none)."""
    steps = [
        s for s in definition.get("steps", []) if isinstance(s, dict) and s.get("type") == "deliver"
    ]
    ids = {s.get("connection_id") for s in steps if isinstance(s.get("connection_id"), int)}
    systems: dict[int, int | None] = {}
    if ids:
        rows = db.session.execute(
            select(Connection.id, Connection.system_id).where(Connection.id.in_(ids))
        )
        systems = {row.id: row.system_id for row in rows}
    return {str(s.get("id")): systems.get(s.get("connection_id")) for s in steps}


def review_view(version: FlowVersion, live: FlowVersion | None) -> dict[str, Any]:
    """The contract part of the review page."""
    return {
        "contract": version.contract,
        "contract_diff": rules.diff(live.contract if live is not None else None, version.contract),
        "contract_problems": [p.to_dict() for p in rules.problems(version.contract, complete=True)],
    }


def guardrails(version: FlowVersion) -> list[Any]:
    return rules.guardrails(version.contract, destination_systems(version.definition or {}))
