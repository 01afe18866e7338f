"""Poll triggers' JSONata fields are checked when the draft is validated, not at poll time."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from connectors.registry import load_registry
from flows.validation import validate
from tests.flows.test_validation import known_connection

REGISTRY = load_registry()
DOC = json.loads(
    (Path(__file__).parents[1] / "fixtures/flows/valid/stock_update_to_wms.json").read_text()
)


@pytest.mark.parametrize("field", ["items", "next_cursor", "id"])
def test_syntax_error_in_a_poll_expression_is_a_problem_with_its_path(field: str) -> None:
    doc = copy.deepcopy(DOC)
    doc["trigger"]["config"][field] = "data.items[0"
    problems = [p for p in validate(doc, REGISTRY, known_connection)]
    found = [p for p in problems if p.code == "invalid_expression"]
    assert [p.path for p in found] == [f"/trigger/config/{field}"]
    assert found[0].position is not None


def test_valid_poll_expressions_and_defaults_have_no_problem() -> None:
    assert validate(copy.deepcopy(DOC), REGISTRY, known_connection) == []
    doc = copy.deepcopy(DOC)
    for field in ("items", "next_cursor", "id"):
        del doc["trigger"]["config"][field]  # the defaults apply
    assert validate(doc, REGISTRY, known_connection) == []


def test_same_field_names_on_other_triggers_are_not_treated_as_jsonata() -> None:
    doc = copy.deepcopy(DOC)
    doc["trigger"] = {"type": "webhook", "config": {}}
    assert not [
        p for p in validate(doc, REGISTRY, known_connection) if p.code == "invalid_expression"
    ]
