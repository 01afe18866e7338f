"""Export and import of one flow as a JSON file: definition (with its samples and sample
tests) and integration contract, portable between installations.

Stored ids do not travel: connections are referred to by name (``connection_id`` becomes
``connection_name``), systems by name and users by e-mail. Secrets and connection configs are
never in the file. An import always lands as a draft that must be reviewed, whatever status
the file claims.
"""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import select

from app.errors import Conflict, Invalid
from app.extensions import db
from app.models import Connection, Flow, FlowVersion, System, User, VersionStatus
from app.services import audit, contracts
from app.services import flows as flow_service
from flows import contract as contract_rules

FORMAT = "flowgate.flow"
FORMAT_VERSION = 1


def _name_maps() -> tuple[dict[int, str], dict[int, str], dict[int, str]]:
    connections = dict(db.session.execute(select(Connection.id, Connection.name)).tuples().all())
    systems = dict(db.session.execute(select(System.id, System.name)).tuples().all())
    users = dict(db.session.execute(select(User.id, User.email)).tuples().all())
    return connections, systems, users


def _swap_connections(
    node: Any, lookup: dict[Any, Any], to_names: bool, problems: list[str]
) -> Any:
    src, dst = (
        ("connection_id", "connection_name") if to_names else ("connection_name", "connection_id")
    )
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == src:
                if value not in lookup:
                    problems.append(f"connection {value!r} does not exist here")
                out[dst] = lookup.get(value)
            else:
                out[key] = _swap_connections(value, lookup, to_names, problems)
        return out
    if isinstance(node, list):
        return [_swap_connections(v, lookup, to_names, problems) for v in node]
    return node


def _contract_out(
    contract: dict[str, Any] | None, systems: dict[int, str], users: dict[int, str]
) -> dict[str, Any] | None:
    if contract is None:
        return None
    c = copy.deepcopy(contract)
    out: dict[str, Any] = {
        k: v
        for k, v in c.items()
        if not k.endswith("_id") and k != "destination_system_ids" and k != "fields"
    }
    if "source_system_id" in c:
        out["source_system"] = systems.get(c["source_system_id"])
    if "destination_system_ids" in c:
        out["destination_systems"] = [systems.get(i) for i in c["destination_system_ids"]]
    if "fields" in c:
        out["fields"] = [
            {
                "destination_system": systems.get(f.get("destination_system_id")),
                "field": f.get("field"),
                "pii": f.get("pii"),
            }
            for f in c["fields"]
        ]
    for role in ("business_owner", "technical_owner"):
        if f"{role}_id" in c:
            out[role] = users.get(c[f"{role}_id"])
    return out


def _contract_in(contract: dict[str, Any] | None, problems: list[str]) -> dict[str, Any] | None:
    if contract is None:
        return None
    systems = {name: i for i, name in db.session.execute(select(System.id, System.name)).tuples()}
    users = {e.lower(): i for i, e in db.session.execute(select(User.id, User.email)).tuples()}

    def system(name: Any) -> Any:
        if name not in systems:
            problems.append(f"system {name!r} does not exist here")
        return systems.get(name)

    def user(email: Any) -> Any:
        key = str(email or "").lower()
        if key not in users:
            problems.append(f"user {email!r} does not exist here")
        return users.get(key)

    known = {"source_system", "destination_systems", "fields", "business_owner", "technical_owner"}
    out: dict[str, Any] = {k: copy.deepcopy(v) for k, v in contract.items() if k not in known}
    if "source_system" in contract:
        out["source_system_id"] = system(contract["source_system"])
    if "destination_systems" in contract:
        out["destination_system_ids"] = [system(n) for n in contract["destination_systems"] or []]
    if "fields" in contract:
        out["fields"] = [
            {
                "destination_system_id": system(f.get("destination_system")),
                "field": f.get("field"),
                "pii": f.get("pii"),
            }
            for f in contract["fields"] or []
            if isinstance(f, dict)
        ]
    for role in ("business_owner", "technical_owner"):
        if role in contract:
            out[f"{role}_id"] = user(contract[role])
    return out


def _version_to_export(flow: Flow, number: int | None) -> FlowVersion:
    if number is not None:
        return flow_service.get_version(flow.id, number)
    version = flow_service.version_with_status(flow, VersionStatus.LIVE) or (
        flow.versions[-1] if flow.versions else None
    )
    if version is None:
        raise Conflict(f"flow {flow.id} has no version to export")
    return version


def export_flow(flow_id: int, number: int | None = None) -> dict[str, Any]:
    """The export document of the flow's live version (or ``number``, or the newest)."""
    flow = flow_service.get_flow(flow_id)
    version = _version_to_export(flow, number)
    connections, systems, users = _name_maps()
    problems: list[str] = []
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "flow": {
            "name": flow.name,
            "slug": flow.slug,
            "description": flow.description,
            "owner": users.get(flow.owner_id) if flow.owner_id else None,
        },
        "version": {"number": version.number, "status": version.status},
        "definition": _swap_connections(version.definition, connections, True, problems),
        "contract": _contract_out(version.contract, systems, users),
    }


def find_flow(ref: str) -> Flow:
    """A flow by id (digits) or slug, for the CLI."""
    if ref.isdigit():
        return flow_service.get_flow(int(ref))
    flow = db.session.execute(select(Flow).where(Flow.slug == ref)).scalar_one_or_none()
    if flow is None:
        raise Invalid(f"no flow with id or slug {ref!r}")
    return flow


def resolve(document: Any) -> tuple[dict[str, Any], dict[str, Any] | None, list[str]]:
    """(definition, contract) with this installation's ids, and every problem found:
    the format, unknown connections/systems/users, definition and contract problems."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        return {}, None, [f"not a Flowgate flow export (format must be {FORMAT!r})"]
    if document.get("format_version") != FORMAT_VERSION:
        return {}, None, [f"unsupported format_version {document.get('format_version')!r}"]
    flow = document.get("flow")
    if not isinstance(flow, dict) or not str(flow.get("name") or "").strip():
        return {}, None, ["flow.name is required"]
    if not isinstance(document.get("definition"), dict):
        return {}, None, ["definition must be an object"]
    problems: list[str] = []
    connections = {
        n: i for i, n in db.session.execute(select(Connection.id, Connection.name)).tuples()
    }
    definition = _swap_connections(document["definition"], connections, False, problems)
    raw_contract = document.get("contract")
    if raw_contract is not None and not isinstance(raw_contract, dict):
        return {}, None, ["contract must be an object or null"]
    contract = _contract_in(raw_contract, problems)
    if not problems:
        problems += [f"{p.path}: {p.message}" for p in flow_service.problems_of(definition)]
        problems += [
            f"contract {p.path}: {p.message}"
            for p in contract_rules.problems(contract, complete=False)
            + contracts.reference_problems(contract)
        ]
    return definition, contract, problems


def import_flow(document: Any, actor: User) -> FlowVersion:
    """A new draft (of the flow with the file's slug, else of a new flow); never live."""
    definition, contract, problems = resolve(document)
    if problems:
        raise Invalid(f"the file has {len(problems)} problem(s)", problems=problems)
    meta = document["flow"]
    flow = db.session.execute(
        select(Flow).where(Flow.slug == str(meta.get("slug") or ""))
    ).scalar_one_or_none()
    if flow is not None:
        existing = flow_service.version_with_status(flow, VersionStatus.DRAFT)
        if existing is not None:
            raise Conflict(
                f"flow {flow.slug} already has a draft (version {existing.number}); submit or"
                " finish it before importing another",
                draft_version=existing.number,
            )
    else:
        flow = flow_service.create_flow(
            {"name": str(meta["name"])[:200], "description": str(meta.get("description") or "")},
            actor,
        )
    version, _ = flow_service.save_draft(flow.id, definition, None, actor, contract=contract)
    audit.record(
        actor,
        "flow.imported",
        "flow_version",
        version.id,
        flow_id=flow.id,
        number=version.number,
        claimed_status=str((document.get("version") or {}).get("status") or ""),
    )
    db.session.commit()
    return version
