"""flows.contract: schema checks (drafting vs submitting), diff and guardrails (pure)."""

from __future__ import annotations

import copy
from typing import Any

from flows import contract

COMPLETE: dict[str, Any] = {
    "source_system_id": 1,
    "destination_system_ids": [2],
    "business_objects": ["order"],
    "direction": "one_way",
    "trigger": "order paid",
    "frequency": "event-driven",
    "volume_per_day": 100,
    "peak_per_minute": 5,
    "fields": [{"destination_system_id": 2, "field": "email", "pii": True}],
    "sla": {
        "max_latency_seconds": 60,
        "business_hours": {
            "timezone": "Europe/Berlin",
            "days": [0, 1],
            "start": "08:00",
            "end": "18:00",
        },
    },
    "error_policy": {"max_attempts": 3, "max_age_seconds": 3600, "dead_letter_handling": "replay"},
    "business_owner_id": 1,
    "technical_owner_id": 2,
    "on_call": {"name": "Ops", "email": "ops@example.test", "webhook_url": None},
}


def test_complete_contract_has_no_problems() -> None:
    assert contract.problems(COMPLETE, complete=True) == []


def test_missing_fields_are_listed_by_dotted_path() -> None:
    partial = copy.deepcopy(COMPLETE)
    del partial["on_call"]
    del partial["sla"]["business_hours"]["timezone"]
    found = contract.problems(partial, complete=True)
    assert contract.missing_fields(found) == ["on_call", "sla.business_hours.timezone"]
    assert contract.missing_fields(contract.problems(None, complete=True)) == [""]


def test_drafting_accepts_holes_but_not_wrong_types() -> None:
    assert contract.problems({"trigger": ""}, complete=False) == []
    assert contract.problems(None, complete=False) == []
    (problem,) = contract.problems({"volume_per_day": "lots"}, complete=False)
    assert (problem.path, problem.code) == ("volume_per_day", "invalid")
    (problem,) = contract.problems({"direction": "sideways"}, complete=False)
    assert problem.path == "direction"


def test_fields_must_go_to_declared_destinations_and_hours_must_make_sense() -> None:
    bad = copy.deepcopy(COMPLETE)
    bad["fields"][0]["destination_system_id"] = 9
    bad["sla"]["business_hours"]["end"] = "07:00"
    paths = [p.path for p in contract.problems(bad, complete=True)]
    assert paths == ["fields.0.destination_system_id", "sla.business_hours.end"]


def test_diff_reports_changed_values_and_fields() -> None:
    new = copy.deepcopy(COMPLETE)
    new["volume_per_day"] = 500
    new["sla"]["business_hours"]["days"] = [0, 1, 2]
    new["fields"] = [
        {"destination_system_id": 2, "field": "email", "pii": False},
        {"destination_system_id": 2, "field": "sku", "pii": False},
    ]
    d = contract.diff(COMPLETE, new)
    assert d["changed"] is True and d["against_live"] is True
    assert d["changes"] == [
        {"field": "sla.business_hours.days", "old": [0, 1], "new": [0, 1, 2]},
        {"field": "volume_per_day", "old": 100, "new": 500},
    ]
    assert d["fields"]["added"] == [{"destination_system_id": 2, "field": "sku", "pii": False}]
    assert d["fields"]["changed"][0]["new"]["pii"] is False
    assert contract.diff(COMPLETE, copy.deepcopy(COMPLETE))["changed"] is False
    assert contract.diff(None, COMPLETE)["against_live"] is False


def statuses(found: list[Any], gid: str) -> list[str]:
    return [g.status for g in found if g.id == gid]


def test_guardrails_pii_owner_and_alert_route() -> None:
    ok = contract.guardrails(COMPLETE, {"send": 2})
    assert statuses(ok, "contract") == ["pass"]
    assert statuses(ok, "pii_routing") == ["pass"]
    assert statuses(ok, "contract_owners") == ["pass"]
    assert statuses(ok, "alert_route") == ["warn"]  # no on-call webhook
    # A destination step delivering to an undeclared system: PII there fails.
    assert statuses(contract.guardrails(COMPLETE, {"send": 3}), "pii_routing") == ["fail"]
    assert statuses(contract.guardrails(COMPLETE, {"send": None}), "pii_routing") == ["fail"]
    no_pii = copy.deepcopy(COMPLETE)
    no_pii["fields"][0]["pii"] = False
    assert statuses(contract.guardrails(no_pii, {"send": 3}), "pii_routing") == ["warn"]
    nobody = {k: v for k, v in COMPLETE.items() if k != "technical_owner_id"}
    found = contract.guardrails(nobody, {"send": 2})
    assert statuses(found, "contract_owners") == ["fail"]
    assert statuses(found, "contract") == ["fail"]
    silent = copy.deepcopy(COMPLETE)
    silent["error_policy"]["dead_letter_handling"] = " "
    assert statuses(contract.guardrails(silent, {}), "alert_route") == ["fail"]
    assert [g.id for g in contract.guardrails(None, {})] == ["contract"]
