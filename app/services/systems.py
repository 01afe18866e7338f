"""The landscape inventory: systems, with owner, criticality and notes (audited)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.errors import Conflict, Invalid, NotFound
from app.extensions import db
from app.models import Connection, FlowVersion, System, User
from app.services import audit


def list_systems() -> list[System]:
    return list(db.session.execute(select(System).order_by(System.name)).scalars())


def get_system(system_id: int) -> System:
    system = db.session.get(System, system_id)
    if system is None:
        raise NotFound(f"system {system_id} does not exist")
    return system


def _check(data: dict[str, Any], system_id: int | None = None) -> None:
    if "name" in data:
        data["name"] = data["name"].strip()
        if not data["name"]:
            raise Invalid("a system needs a name")
        clash = db.session.execute(
            select(System.id).where(System.name == data["name"], System.id != (system_id or -1))
        ).first()
        if clash:
            raise Conflict(f"a system named '{data['name']}' exists")
    owner_id = data.get("owner_id")
    if owner_id is not None and db.session.get(User, owner_id) is None:
        raise Invalid(f"user {owner_id} does not exist", field="owner_id")


def create_system(data: dict[str, Any], actor: User) -> System:
    _check(data)
    system = System(**data)
    db.session.add(system)
    db.session.flush()
    audit.record(actor, "system.created", "system", system.id, **_described(system))
    db.session.commit()
    return system


def update_system(system_id: int, data: dict[str, Any], actor: User) -> System:
    system = get_system(system_id)
    _check(data, system_id)
    changes = {}
    for key, value in data.items():
        if getattr(system, key) != value:
            changes[key] = {"from": getattr(system, key), "to": value}
            setattr(system, key, value)
    if changes:
        audit.record(actor, "system.updated", "system", system.id, changes=changes)
        db.session.commit()
    return system


def references(system_id: int) -> dict[str, list[Any]]:
    """Connections pointing at the system and flow versions whose contract names it."""
    connections = list(
        db.session.execute(
            select(Connection.name).where(Connection.system_id == system_id).order_by(Connection.id)
        ).scalars()
    )
    versions = []
    rows = db.session.execute(
        select(FlowVersion.flow_id, FlowVersion.number, FlowVersion.contract).where(
            FlowVersion.contract.is_not(None)
        )
    )
    for flow_id, number, contract in rows:
        if system_id in contract_system_ids(contract):
            versions.append(f"flow {flow_id} v{number}")
    return {"connections": connections, "contracts": versions}


def contract_system_ids(contract: Any) -> set[int]:
    if not isinstance(contract, dict):
        return set()
    ids = {contract.get("source_system_id"), *(contract.get("destination_system_ids") or [])}
    ids |= {
        f.get("destination_system_id") for f in contract.get("fields") or [] if isinstance(f, dict)
    }
    return {i for i in ids if isinstance(i, int)}


def delete_system(system_id: int, actor: User) -> None:
    system = get_system(system_id)
    refs = references(system_id)
    if refs["connections"] or refs["contracts"]:
        raise Conflict(
            f"system '{system.name}' is still referenced; point these elsewhere first",
            connections=refs["connections"],
            contracts=refs["contracts"],
        )
    audit.record(actor, "system.deleted", "system", system.id, **_described(system))
    db.session.delete(system)
    db.session.commit()


def _described(system: System) -> dict[str, Any]:
    return {
        "name": system.name,
        "kind": system.kind,
        "criticality": system.criticality,
        "owner_id": system.owner_id,
    }
