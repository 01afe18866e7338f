"""Route and split steps in the engine (no database), and their validation.

A recorder destination keeps what it receives with the idempotency key; an in-memory
ledger plays the delivery ledger, so re-running a run shows what a retry or a recovery does.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from connectors.base import ConnectorSpec, Destination, RetryableConnectorError, SendResult
from connectors.registry import ConnectorRegistry, load_registry
from flows.definition import FlowDefinition, base_step_id
from flows.engine import FlowRunner
from flows.ports import DeliveryRecord, ResolvedConnection
from flows.results import DeliveryStatus, RunStatus, StepStatus
from flows.validation import validate

SENT: list[tuple[str, Any, str]] = []  # (destination name, message, idempotency key)
FAIL_ONCE: set[str] = set()  # idempotency keys whose next send fails (503)
FIXTURE = (
    Path(__file__).resolve().parent.parent
    / "fixtures"
    / "flows"
    / "valid"
    / "order_lines_routed_by_status.json"
)


class Sink(Destination):
    spec = ConnectorSpec(
        key="sink",
        name="Sink",
        kind="destination",
        version=1,
        description="test",
        requires_connection=False,
    )

    def send(self, ctx, message, *, idempotency_key):
        if idempotency_key in FAIL_ONCE:
            FAIL_ONCE.discard(idempotency_key)
            raise RetryableConnectorError("503 from the destination")
        SENT.append((ctx.step_config.get("name", ""), message, idempotency_key))
        return SendResult(200, "ok")


class Ledger:
    def __init__(self) -> None:
        self.rows: dict[tuple[int, str], DeliveryRecord] = {}
        self.keys: dict[tuple[int, str], str] = {}

    def get(self, run_id, step_id):
        return self.rows.get((run_id, step_id))

    def begin(self, run_id, step_id, key, **_):
        previous = self.rows.get((run_id, step_id))
        attempts = (previous.attempts if previous else 0) + 1
        self.rows[(run_id, step_id)] = DeliveryRecord(DeliveryStatus.SENDING, attempts)
        self.keys[(run_id, step_id)] = key
        return attempts

    def acknowledge(self, run_id, step_id, result):
        row = self.rows[(run_id, step_id)]
        self.rows[(run_id, step_id)] = DeliveryRecord(DeliveryStatus.ACKNOWLEDGED, row.attempts)

    def fail(self, run_id, step_id, *, status, **_):
        row = self.rows[(run_id, step_id)]
        self.rows[(run_id, step_id)] = DeliveryRecord(status, row.attempts)


class NoConnections:
    def resolve(self, connection_id: int) -> ResolvedConnection | None:
        return None


def runner(ledger: Ledger | None = None, simulate: bool = False) -> FlowRunner:
    SENT.clear()
    FAIL_ONCE.clear()
    return FlowRunner(
        registry=ConnectorRegistry([Sink]),
        connections=NoConnections(),
        deliveries=ledger if ledger is not None else Ledger(),
        http=None,
        key_prefix="fgt",
        simulate=simulate,
    )


def deliver(step_id: str) -> dict[str, Any]:
    return {"id": step_id, "type": "deliver", "connector": "sink", "config": {"name": step_id}}


def route_flow(mode: str = "first", otherwise: bool = True) -> FlowDefinition:
    steps = [
        {
            "id": "by_total",
            "type": "route",
            "mode": mode,
            "otherwise": otherwise,
            "cases": [
                {"name": "big", "condition": "total > 100"},
                {"name": "eu", "condition": "country in ['DE', 'FR']"},
            ],
        },
        deliver("to_big"),
        deliver("to_eu"),
        deliver("to_rest"),
    ]
    edges = [
        {"from": "trigger", "to": "by_total"},
        {"from": "by_total", "to": "to_big", "case": "big"},
        {"from": "by_total", "to": "to_eu", "case": "eu"},
    ]
    if otherwise:
        edges.append({"from": "by_total", "to": "to_rest", "case": "otherwise"})
    else:
        steps.pop()
    return FlowDefinition.from_json(
        {"schema_version": 1, "trigger": {"type": "webhook"}, "steps": steps, "edges": edges}
    )


def split_flow(max_items: int = 1000, expression: str = "line_items") -> FlowDefinition:
    doc = {
        "schema_version": 1,
        "trigger": {"type": "webhook"},
        "steps": [
            {"id": "lines", "type": "split", "expression": expression, "max_items": max_items},
            {"id": "shape", "type": "map", "expression": "{'sku': sku, 'qty': qty}"},
            deliver("to_wms"),
        ],
        "edges": [
            {"from": "trigger", "to": "lines"},
            {"from": "lines", "to": "shape"},
            {"from": "shape", "to": "to_wms"},
        ],
    }
    return FlowDefinition.from_json(doc)


ORDER = {
    "order": 7,
    "line_items": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}, {"sku": "C", "qty": 3}],
}


# -- route -----------------------------------------------------------------------------------


def test_route_first_mode_follows_only_the_first_matching_case():
    result = runner().run(1, route_flow(), {"total": 500, "country": "DE"})
    assert result.status == RunStatus.SUCCEEDED
    assert [name for name, _, _ in SENT] == ["to_big"]
    route = result.steps[0]
    assert route.step_id == "by_total" and route.output == {"cases": ["big"]}


def test_route_all_mode_follows_every_matching_case_in_case_order():
    result = runner().run(1, route_flow(mode="all"), {"total": 500, "country": "DE"})
    assert result.status == RunStatus.SUCCEEDED
    assert [name for name, _, _ in SENT] == ["to_big", "to_eu"]
    assert result.steps[0].output == {"cases": ["big", "eu"]}


def test_route_takes_otherwise_only_when_no_case_matches():
    result = runner().run(1, route_flow(mode="all"), {"total": 5, "country": "US"})
    assert [name for name, _, _ in SENT] == ["to_rest"]
    assert result.steps[0].output == {"cases": ["otherwise"]}


def test_route_without_match_or_otherwise_is_filtered_with_a_reason():
    result = runner().run(1, route_flow(otherwise=False), {"total": 5, "country": "US"})
    assert SENT == []
    assert result.status == RunStatus.FILTERED
    assert "by_total" in result.reason and "no case matched" in result.reason
    assert result.steps[0].status == StepStatus.FILTERED
    assert result.steps[0].output["cases"] == []


def test_route_condition_error_fails_the_run_naming_the_case():
    flow = route_flow()
    broken = FlowDefinition(
        trigger=flow.trigger,
        steps=(
            flow.steps[0].__class__(
                **{
                    **flow.steps[0].__dict__,
                    "cases": (flow.steps[0].cases[0].__class__("bad", "$error('boom')"),),
                }
            ),
            *flow.steps[1:],
        ),
        edges=flow.edges,
        edge_cases=flow.edge_cases,
    )
    result = runner().run(1, broken, {"total": 1})
    assert result.status == RunStatus.DEAD_LETTERED
    assert result.steps[0].status == StepStatus.FAILED
    assert result.steps[0].error["case"] == "bad"
    assert SENT == []


# -- split -----------------------------------------------------------------------------------


def test_split_runs_the_following_steps_once_per_item_with_distinct_keys():
    result = runner().run(42, split_flow(), ORDER)
    assert result.status == RunStatus.SUCCEEDED
    assert [message for _, message, _ in SENT] == [
        {"sku": "A", "qty": 1},
        {"sku": "B", "qty": 2},
        {"sku": "C", "qty": 3},
    ]
    keys = [key for _, _, key in SENT]
    assert keys == ["fgt-run-42-to_wms[0]", "fgt-run-42-to_wms[1]", "fgt-run-42-to_wms[2]"]
    recorded = [(s.step_id, s.status) for s in result.steps]
    assert recorded[0] == ("lines", StepStatus.SUCCEEDED)
    assert result.steps[0].output == {"items": 3}
    assert [step_id for step_id, _ in recorded[1:]] == [
        "shape[0]",
        "to_wms[0]",
        "shape[1]",
        "to_wms[1]",
        "shape[2]",
        "to_wms[2]",
    ]
    assert result.steps[1].input == {"sku": "A", "qty": 1}  # each child records its item


def test_split_rerun_sends_nothing_twice_and_retries_only_the_failed_item():
    ledger = Ledger()
    engine = runner(ledger)
    FAIL_ONCE.add("fgt-run-9-to_wms[1]")  # item 1 fails once, 0 and 2 go through
    first = engine.run(9, split_flow(), ORDER)
    assert first.status == RunStatus.RETRYING
    assert [key for _, _, key in SENT] == ["fgt-run-9-to_wms[0]", "fgt-run-9-to_wms[2]"]
    # Item 2 still went out: one failing item does not hold back its siblings.
    assert ledger.rows[(9, "to_wms[2]")].status == DeliveryStatus.ACKNOWLEDGED
    SENT.clear()
    second = engine.run(9, split_flow(), ORDER)  # the retry (or a recovery) of the same run
    assert second.status == RunStatus.SUCCEEDED
    assert [key for _, _, key in SENT] == ["fgt-run-9-to_wms[1]"]
    statuses = {s.step_id: s.status for s in second.steps}
    assert statuses["to_wms[0]"] == StepStatus.SKIPPED
    assert statuses["to_wms[2]"] == StepStatus.SKIPPED
    assert ledger.keys[(9, "to_wms[1]")] == "fgt-run-9-to_wms[1]"
    SENT.clear()
    third = engine.run(9, split_flow(), ORDER)  # a replay after success sends nothing
    assert third.status == RunStatus.SUCCEEDED and SENT == []


def test_split_of_an_empty_array_or_missing_field_is_filtered():
    for payload in ({"order": 1, "line_items": []}, {"order": 1}):
        result = runner().run(1, split_flow(), payload)
        assert result.status == RunStatus.FILTERED
        assert "gave no items" in result.reason
        assert result.steps[0].status == StepStatus.FILTERED
        assert len(result.steps) == 1 and SENT == []


def test_split_of_a_single_value_is_one_item():
    result = runner().run(1, split_flow(), {"line_items": {"sku": "Z", "qty": 9}})
    assert result.status == RunStatus.SUCCEEDED
    assert [message for _, message, _ in SENT] == [{"sku": "Z", "qty": 9}]


def test_split_over_its_item_limit_fails_with_a_clear_error_and_sends_nothing():
    result = runner().run(1, split_flow(max_items=2), ORDER)
    assert result.status == RunStatus.DEAD_LETTERED
    assert "split_too_many_items" in result.reason and "limit of 2" in result.reason
    error = result.steps[0].error
    assert error["code"] == "split_too_many_items"
    assert error["items"] == 3 and error["max_items"] == 2
    assert SENT == []


def test_simulated_run_shows_route_and_split_children():
    doc = json.loads(FIXTURE.read_text())
    for step in doc["steps"]:
        if step["type"] == "deliver":
            step.update(connector="sink", config={"name": step["id"]})
            step.pop("connection_id")
    payload = {"financial_status": "paid", "line_items": [{"sku": "A"}, {"sku": "B"}]}
    result = runner(simulate=True).run(0, FlowDefinition.from_json(doc), payload)
    assert result.status == RunStatus.SUCCEEDED
    simulated = [s.step_id for s in result.steps if s.status == StepStatus.SIMULATED]
    assert simulated == ["send_wms_line[0]", "send_wms_line[1]"]
    assert SENT == []  # simulate sends nothing
    assert base_step_id("send_wms_line[1]") == "send_wms_line"
    payload["financial_status"] = "voided"
    result = runner(simulate=True).run(0, FlowDefinition.from_json(doc), payload)
    assert [s.step_id for s in result.steps] == ["by_payment", "send_review"]


def test_nested_splits_suffix_every_level():
    doc = {
        "schema_version": 1,
        "trigger": {"type": "webhook"},
        "steps": [
            {"id": "orders", "type": "split", "expression": "orders"},
            {"id": "lines", "type": "split", "expression": "lines"},
            deliver("out"),
        ],
        "edges": [
            {"from": "trigger", "to": "orders"},
            {"from": "orders", "to": "lines"},
            {"from": "lines", "to": "out"},
        ],
    }
    payload = {"orders": [{"lines": [1, 2]}, {"lines": [3]}]}
    runner().run(3, FlowDefinition.from_json(doc), payload)
    assert [(m, k) for _, m, k in SENT] == [
        (1, "fgt-run-3-out[0][0]"),
        (2, "fgt-run-3-out[0][1]"),
        (3, "fgt-run-3-out[1][0]"),
    ]


# -- validation ------------------------------------------------------------------------------

REGISTRY = load_registry()


def problems(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(p.path, p.code) for p in validate(doc, REGISTRY, lambda i: "http")}


def fixture() -> dict[str, Any]:
    return copy.deepcopy(json.loads(FIXTURE.read_text()))


def test_the_route_split_fixture_is_valid():
    assert problems(fixture()) == set()


def test_every_edge_out_of_a_route_names_an_existing_case():
    doc = fixture()
    doc["edges"][1].pop("case")
    doc["edges"][2]["case"] = "chargeback"
    found = problems(doc)
    assert ("/edges/1", "missing_case") in found
    assert ("/edges/2/case", "unknown_case") in found


def test_a_case_has_at_most_one_edge():
    doc = fixture()
    doc["edges"].append({"from": "by_payment", "to": "send_review", "case": "paid"})
    assert ("/edges/6/case", "duplicate_case_edge") in problems(doc)


def test_otherwise_edge_needs_the_otherwise_branch_enabled():
    doc = fixture()
    doc["steps"][0]["otherwise"] = False
    assert ("/edges/3/case", "unknown_case") in problems(doc)


def test_edges_out_of_other_steps_carry_no_case():
    doc = fixture()
    doc["edges"][4]["case"] = "paid"
    doc["edges"][0]["case"] = "paid"  # out of the trigger
    found = problems(doc)
    assert ("/edges/4/case", "unexpected_case") in found
    assert ("/edges/0/case", "unexpected_case") in found


def test_case_names_are_unique_and_otherwise_is_reserved():
    doc = fixture()
    doc["steps"][0]["cases"].append({"name": "paid", "condition": "true"})
    doc["steps"][0]["cases"].append({"name": "otherwise", "condition": "true"})
    found = problems(doc)
    assert ("/steps/0/cases/2/name", "duplicate_case") in found
    assert ("/steps/0/cases/3/name", "reserved_case_name") in found


def test_route_and_split_expressions_are_checked_with_their_path():
    doc = fixture()
    doc["steps"][0]["cases"][1]["condition"] = "financial_status = ("
    doc["steps"][1]["expression"] = "$sum("
    found = problems(doc)
    assert ("/steps/0/cases/1/condition", "invalid_expression") in found
    assert ("/steps/1/expression", "invalid_expression") in found


def test_schema_rejects_a_route_without_cases_and_a_bad_max_items():
    doc = fixture()
    doc["steps"][0]["cases"] = []
    doc["steps"][1]["max_items"] = 0
    codes = {code for _, code in problems(doc)}
    assert codes == {"schema"}


@pytest.mark.parametrize("max_items, ok", [(10, True), (100000 // 10, False)])
def test_ids_below_a_split_must_fit_with_their_item_suffix(max_items, ok):
    doc = fixture()
    doc["steps"][1]["max_items"] = max_items
    long_id = "l" * 60  # + "[9]" = 63 fits, + "[9999]" = 66 does not
    doc["steps"][3]["id"] = long_id
    doc["edges"][5]["to"] = long_id
    found = problems(doc)
    assert (("/steps/3/id", "id_too_long") in found) is (not ok)
