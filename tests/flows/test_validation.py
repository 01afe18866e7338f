"""The flow definition validator, over the fixture corpus (Kestra style: valid/ and invalid/).

Each invalid fixture declares the problems it must produce in ``$expect`` as
``[path, code]`` pairs; the validator may report more, never fewer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.registry import load_registry
from flows.definition import FlowDefinition, content_hash
from flows.validation import validate

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "flows"
REGISTRY = load_registry()


def known_connection(connection_id: int) -> str | None:
    known = {3: "http", 4: "sql", 5: "amqp", 6: "redis_stream", 7: "file", 8: "email"}
    known |= {9: "poll_http", 10: "webhook"}
    return known.get(connection_id)


def load(path: Path) -> tuple[dict, list[list[str]]]:
    doc = json.loads(path.read_text())
    return doc, doc.pop("$expect", [])


@pytest.mark.parametrize("path", sorted((CORPUS / "valid").glob("*.json")), ids=lambda p: p.stem)
def test_valid_corpus_has_no_problems_and_parses(path):
    doc, _ = load(path)
    assert validate(doc, REGISTRY, known_connection) == []
    parsed = FlowDefinition.from_json(doc)
    assert parsed.destinations()


@pytest.mark.parametrize("path", sorted((CORPUS / "invalid").glob("*.json")), ids=lambda p: p.stem)
def test_invalid_corpus_reports_expected_problems(path):
    doc, expected = load(path)
    assert expected, f"{path.name} must declare $expect"
    found = {(p.path, p.code) for p in validate(doc, REGISTRY, known_connection)}
    for pointer, code in expected:
        assert (pointer, code) in found, f"missing {code} at {pointer}; got {sorted(found)}"


def test_every_problem_is_reported_not_just_the_first():
    doc, _ = load(CORPUS / "valid" / "web_order_to_oms.json")
    doc["steps"][1]["expression"] = "$sum("
    doc["steps"][2]["connection_id"] = 999
    doc["edges"].append({"from": "send_oms", "to": "ghost"})
    codes = {p.code for p in validate(doc, REGISTRY, known_connection)}
    assert {"invalid_expression", "unknown_connection", "dangling_edge"} <= codes


def test_jsonata_problem_carries_the_position():
    doc, _ = load(CORPUS / "valid" / "web_order_to_oms.json")
    doc["steps"][1]["expression"] = "{ 'a': $sum( }"
    problem = next(
        p for p in validate(doc, REGISTRY, known_connection) if p.code == "invalid_expression"
    )
    assert problem.position is not None and 0 < problem.position <= len("{ 'a': $sum( }")


def test_layout_and_samples_never_change_the_content_hash():
    doc, _ = load(CORPUS / "valid" / "web_order_to_oms.json")
    moved = dict(doc, layout={"send_oms": {"x": 999, "y": -4}}, samples=[{"a": 1}])
    assert content_hash(moved) == content_hash(doc)
    changed = json.loads(json.dumps(doc))
    changed["steps"][0]["condition"] = "true"
    assert content_hash(changed) != content_hash(doc)


def test_non_object_documents_are_problems_not_crashes():
    for doc in (None, [], "flow", 3, {"schema_version": 2}):
        problems = validate(doc, REGISTRY, known_connection)
        assert problems and problems[0].code == "schema"
