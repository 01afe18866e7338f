"""A deliver step's declared input schema is checked before anything is sent (the fake
registry/ledger pattern of test_engine.py, copied so the two files stay independent)."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import ConnectorSpec, Destination, SendResult
from connectors.registry import ConnectorRegistry
from flows.definition import FlowDefinition
from flows.engine import FlowRunner
from flows.ports import DeliveryRecord, ResolvedConnection
from flows.results import DeliveryStatus, RunStatus, StepStatus

RECEIVED: list[Any] = []


class Recorder(Destination):
    spec = ConnectorSpec(
        key="recorder",
        name="Recorder",
        kind="destination",
        version=1,
        description="test",
        requires_connection=False,
    )

    def send(self, ctx, message, *, idempotency_key):
        RECEIVED.append(message)
        return SendResult(200, "ok")


class MemoryLedger:
    def __init__(self) -> None:
        self.rows: dict[tuple[int, str], DeliveryRecord] = {}
        self.calls: list[str] = []

    def get(self, run_id, step_id):
        self.calls.append("get")
        return self.rows.get((run_id, step_id))

    def begin(self, run_id, step_id, key):
        self.calls.append("begin")
        attempts = (
            self.rows.get((run_id, step_id), DeliveryRecord(DeliveryStatus.SENDING, 0)).attempts + 1
        )
        self.rows[(run_id, step_id)] = DeliveryRecord(DeliveryStatus.SENDING, attempts)
        return attempts

    def acknowledge(self, run_id, step_id, result):
        self.calls.append("acknowledge")
        self.rows[(run_id, step_id)] = DeliveryRecord(
            DeliveryStatus.ACKNOWLEDGED, self.rows[(run_id, step_id)].attempts
        )

    def fail(self, run_id, step_id, *, status, **_):
        self.calls.append("fail")
        self.rows[(run_id, step_id)] = DeliveryRecord(status, self.rows[(run_id, step_id)].attempts)


class NoConnections:
    def resolve(self, connection_id: int) -> ResolvedConnection | None:
        return None


def runner(ledger: MemoryLedger, simulate: bool = False) -> FlowRunner:
    RECEIVED.clear()
    return FlowRunner(
        registry=ConnectorRegistry([Recorder]),
        connections=NoConnections(),
        deliveries=ledger,
        http=None,
        key_prefix="fgtest",
        simulate=simulate,
    )


FLOW = FlowDefinition.from_json(
    {
        "schema_version": 1,
        "trigger": {"type": "webhook"},
        "steps": [
            {
                "id": "shape",
                "type": "map",
                "expression": (
                    "{'orderNumber': ref, 'orderedAt': at, 'currency': 'GBP',"
                    " 'customer': {'email': email},"
                    " 'lines': [lines.{'sku': sku, 'quantity': qty, 'unitPrice': price}],"
                    " 'totals': {'gross': total}}"
                ),
            },
            {
                "id": "to_oms",
                "type": "deliver",
                "connector": "recorder",
                "input_schema": {"name": "order", "version": 1},
            },
        ],
        "edges": [{"from": "trigger", "to": "shape"}, {"from": "shape", "to": "to_oms"}],
    }
)

GOOD = {
    "ref": "WEB-1001",
    "at": "2026-11-20T09:15:01Z",
    "email": "a@example.com",
    "lines": [{"sku": "A", "qty": 2, "price": 24.0}],
    "total": 57.6,
}


def test_matching_input_is_delivered():
    ledger = MemoryLedger()
    result = runner(ledger).run(1, FLOW, GOOD)
    assert result.status == RunStatus.SUCCEEDED
    assert RECEIVED and RECEIVED[0]["orderNumber"] == "WEB-1001"
    assert ledger.calls == ["get", "begin", "acknowledge"]


def test_mismatch_dead_letters_before_the_ledger_and_sends_nothing():
    ledger = MemoryLedger()
    bad = {**GOOD, "lines": [{"sku": "A", "qty": "two", "price": 24.0}], "email": None}
    result = runner(ledger).run(2, FLOW, bad)
    assert result.status == RunStatus.DEAD_LETTERED
    assert "invalid_mapping_output" in (result.reason or "")
    assert RECEIVED == []
    assert ledger.calls == [] and ledger.rows == {}
    step = result.steps[-1]
    assert step.step_id == "to_oms" and step.status == StepStatus.FAILED
    assert step.error["code"] == "invalid_mapping_output"
    paths = [p["path"] for p in step.error["problems"]]
    assert paths == ["/customer/email", "/lines/0/quantity"]
    assert all(p["message"] for p in step.error["problems"])


def test_simulated_run_reports_the_mismatch_too():
    result = runner(MemoryLedger(), simulate=True).run(3, FLOW, {**GOOD, "total": "lots"})
    assert result.status == RunStatus.DEAD_LETTERED
    assert result.steps[-1].error["problems"][0]["path"] == "/totals/gross"


def _flow_mapping(expression: str) -> FlowDefinition:
    return FlowDefinition.from_json(
        {
            "schema_version": 1,
            "trigger": {"type": "webhook"},
            "steps": [
                {"id": "shape", "type": "map", "expression": expression},
                {"id": "to_oms", "type": "deliver", "connector": "recorder"},
            ],
            "edges": [{"from": "trigger", "to": "shape"}, {"from": "shape", "to": "to_oms"}],
        }
    )


@pytest.mark.parametrize("expression", ["no_such_field", "null", "ref = 'other' ? {'a': 1}"])
def test_an_empty_mapping_output_is_never_sent(expression):
    """Undefined (no match) or null would reach the destination as a literal ``null``."""
    ledger = MemoryLedger()
    result = runner(ledger).run(4, _flow_mapping(expression), GOOD)
    assert result.status == RunStatus.DEAD_LETTERED
    assert "invalid_mapping_output" in (result.reason or "")
    assert "mapping gave no value" in (result.reason or "")
    assert RECEIVED == [] and ledger.calls == [] and ledger.rows == {}
    step = result.steps[-1]
    assert step.step_id == "to_oms" and step.error["code"] == "invalid_mapping_output"


def test_an_array_or_a_falsy_value_is_still_sent():
    """Only "no value" is refused: an empty list, 0 or false is a value a destination may want."""
    for expression, expected in (("[]", []), ("0", 0), ("false", False)):
        result = runner(MemoryLedger()).run(5, _flow_mapping(expression), GOOD)
        assert result.status == RunStatus.SUCCEEDED, expression
        assert RECEIVED == [expected]
