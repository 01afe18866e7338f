"""The integration contract of a flow version: schema, validation, diff and guardrails.

A contract says what a flow moves between which systems, how much and how fast, who is
accountable and who is called when it breaks (``contract.schema.json``). It is optional while
a version is a draft (only the types of what is there are checked) and must be complete to
submit. Pure: the web layer checks that the referenced systems and users exist, and tells
:func:`guardrails` which system each destination step delivers to.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

from flows.review import FAIL, PASS, WARN, Guardrail

# Relaxed while drafting: a half-filled form is fine, a wrong type is not.
_DRAFT_RELAXED = ("required", "minItems", "minLength")


@dataclass(frozen=True)
class ContractProblem:
    path: str  # dotted, e.g. "sla.business_hours.start"
    code: str  # missing | invalid
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_contract_schema() -> dict[str, Any]:
    """The JSON Schema of a complete contract, shipped as package data."""
    text = resources.files("flows").joinpath("contract.schema.json").read_text(encoding="utf-8")
    return dict(json.loads(text))


def _relaxed(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _relaxed(v) for k, v in node.items() if k not in _DRAFT_RELAXED}
    if isinstance(node, list):
        return [_relaxed(v) for v in node]
    return node


@lru_cache(maxsize=2)
def _validator(complete: bool) -> Draft202012Validator:
    schema = load_contract_schema()
    return Draft202012Validator(schema if complete else _relaxed(schema))


def _dotted(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts)


def problems(contract: Any, *, complete: bool) -> list[ContractProblem]:
    """Every problem of ``contract``; ``complete`` demands every field (submission)."""
    if contract is None:
        if complete:
            return [ContractProblem("", "missing", "the integration contract is missing")]
        return []
    found: list[ContractProblem] = []
    for error in _validator(complete).iter_errors(contract):
        if error.validator == "required":
            parent = list(error.absolute_path)
            for name in error.validator_value:
                if isinstance(error.instance, dict) and name not in error.instance:
                    path = _dotted([*parent, name])
                    found.append(ContractProblem(path, "missing", f"{path} is required"))
            continue
        path = _dotted(error.absolute_path)
        found.append(ContractProblem(path, "invalid", f"{path or 'contract'}: {error.message}"))
    if complete and not found:
        found += _consistency(contract)
    return sorted(found, key=lambda p: (p.path, p.code, p.message))


def _consistency(contract: Mapping[str, Any]) -> list[ContractProblem]:
    declared = set(contract["destination_system_ids"])
    out = []
    for i, item in enumerate(contract["fields"]):
        if item["destination_system_id"] not in declared:
            out.append(
                ContractProblem(
                    f"fields.{i}.destination_system_id",
                    "invalid",
                    f"field {item['field']!r} goes to system {item['destination_system_id']},"
                    " which is not one of the contract's destination systems",
                )
            )
    hours = contract["sla"]["business_hours"]
    if hours["start"] >= hours["end"]:
        out.append(
            ContractProblem(
                "sla.business_hours.end", "invalid", "business hours must end after they start"
            )
        )
    return out


def missing_fields(found: Iterable[ContractProblem]) -> list[str]:
    return [p.path for p in found if p.code == "missing"]


def referenced_ids(contract: Mapping[str, Any] | None) -> tuple[set[int], set[int]]:
    """(system ids, user ids) the contract refers to, for an existence check."""
    if not contract:
        return set(), set()
    systems: set[int] = set()
    if isinstance(contract.get("source_system_id"), int):
        systems.add(contract["source_system_id"])
    systems |= {s for s in contract.get("destination_system_ids") or [] if isinstance(s, int)}
    for item in contract.get("fields") or []:
        if isinstance(item, dict) and isinstance(item.get("destination_system_id"), int):
            systems.add(item["destination_system_id"])
    users = {
        contract[k]
        for k in ("business_owner_id", "technical_owner_id")
        if isinstance(contract.get(k), int)
    }
    return systems, users


# -- diff ------------------------------------------------------------------------------------


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "fields" and not prefix:
                continue  # compared entry by entry below
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def _field_key(item: Mapping[str, Any]) -> tuple[Any, Any]:
    return (item.get("destination_system_id"), item.get("field"))


def diff(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> dict[str, Any]:
    """What ``new`` changes against ``old`` (the live version's contract; None: none yet).

    ``changes``: one entry per changed scalar or list, by dotted path; ``fields``: the
    declared fields added, removed or re-flagged (matched by destination system and name)."""
    flat_old, flat_new = _flatten(old or {}), _flatten(new or {})
    changes = [
        {"field": key, "old": flat_old.get(key), "new": flat_new.get(key)}
        for key in sorted(set(flat_old) | set(flat_new))
        if flat_old.get(key) != flat_new.get(key)
    ]
    old_fields = {_field_key(f): f for f in (old or {}).get("fields") or [] if isinstance(f, dict)}
    new_fields = {_field_key(f): f for f in (new or {}).get("fields") or [] if isinstance(f, dict)}
    fields = {
        "added": [new_fields[k] for k in new_fields if k not in old_fields],
        "removed": [old_fields[k] for k in old_fields if k not in new_fields],
        "changed": [
            {"old": old_fields[k], "new": new_fields[k]}
            for k in new_fields
            if k in old_fields and old_fields[k] != new_fields[k]
        ],
    }
    changed = bool(changes or any(fields.values()))
    return {
        "against_live": old is not None,
        "changed": changed,
        "changes": changes,
        "fields": fields,
    }


# -- guardrails ------------------------------------------------------------------------------


def _owner_guardrail(contract: Mapping[str, Any]) -> Guardrail:
    missing = [k for k in ("business_owner_id", "technical_owner_id") if not contract.get(k)]
    if missing:
        return Guardrail(
            "contract_owners",
            FAIL,
            "the contract names no "
            + " and no ".join(m.removesuffix("_id") for m in missing)
            + ": someone must be accountable for this integration",
        )
    return Guardrail("contract_owners", PASS, "business and technical owners are named")


def _alert_route_guardrail(contract: Mapping[str, Any]) -> Guardrail:
    on_call = contract.get("on_call") or {}
    policy = contract.get("error_policy") or {}
    if not on_call.get("email") or not str(policy.get("dead_letter_handling") or "").strip():
        return Guardrail(
            "alert_route",
            FAIL,
            "no dead-letter/alert route: the contract needs an on-call contact with an e-mail"
            " and says how dead letters are handled, so failed messages reach someone",
        )
    if not on_call.get("webhook_url"):
        return Guardrail(
            "alert_route",
            WARN,
            f"failures reach {on_call['email']} by e-mail only; an on-call webhook"
            " (pager, chat) is recommended",
        )
    return Guardrail("alert_route", PASS, "failures reach the on-call by e-mail and webhook")


def _pii_guardrails(
    contract: Mapping[str, Any], destination_systems: Mapping[str, int | None]
) -> list[Guardrail]:
    declared = set(contract.get("destination_system_ids") or [])
    pii = [f for f in contract.get("fields") or [] if isinstance(f, dict) and f.get("pii")]
    out = []
    pii_names = ", ".join(str(f.get("field")) for f in pii)
    for item in pii:
        if item.get("destination_system_id") not in declared:
            out.append(
                Guardrail(
                    "pii_routing",
                    FAIL,
                    f"PII field {item.get('field')!r} goes to system"
                    f" {item.get('destination_system_id')}, not declared as a destination",
                )
            )
    for step_id, system_id in sorted(destination_systems.items()):
        if system_id in declared:
            continue
        where = "a connection with no system" if system_id is None else f"system {system_id}"
        if pii:
            out.append(
                Guardrail(
                    "pii_routing",
                    FAIL,
                    f"the flow sends data with PII fields ({pii_names})"
                    f" to {where}, which the contract does not declare as a destination",
                    step_id,
                )
            )
        else:
            out.append(
                Guardrail(
                    "pii_routing",
                    WARN,
                    f"this step delivers to {where}, not declared in the contract",
                    step_id,
                )
            )
    if not out:
        out.append(
            Guardrail(
                "pii_routing",
                PASS,
                f"{len(pii)} PII field(s); every destination is declared in the contract",
            )
        )
    return out


def guardrails(
    contract: Mapping[str, Any] | None, destination_systems: Mapping[str, int | None]
) -> list[Guardrail]:
    """Contract checks: complete, owners named, an alert route, PII only to declared systems.
    ``destination_systems`` maps each destination step id to its connection's system id."""
    if contract is None:
        return [
            Guardrail(
                "contract",
                FAIL,
                "no integration contract: systems, fields, SLA, error policy and owners"
                " must be declared",
            )
        ]
    found = problems(contract, complete=True)
    out = [
        Guardrail("contract", FAIL, f"the contract is incomplete: {found[0].message}")
        if found
        else Guardrail("contract", PASS, "the integration contract is complete")
    ]
    out.append(_owner_guardrail(contract))
    out.append(_alert_route_guardrail(contract))
    out += _pii_guardrails(contract, destination_systems)
    return out
