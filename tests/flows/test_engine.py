"""The engine on its own: fake destinations that record what they receive (Node-RED's helper
node), an in-memory delivery ledger, no database, no web layer."""

from __future__ import annotations

from typing import Any

from connectors.base import (
    ConnectorError,
    ConnectorSpec,
    Destination,
    RetryableConnectorError,
    SendResult,
)
from connectors.registry import ConnectorRegistry
from flows.definition import FlowDefinition, RetryPolicy
from flows.engine import FlowRunner, backoff_seconds
from flows.ports import DeliveryRecord, ResolvedConnection
from flows.results import DeliveryStatus, RunStatus, StepStatus

RECEIVED: list[tuple[str, Any, str]] = []
FAILURES: list[ConnectorError] = []


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
        if FAILURES:
            raise FAILURES.pop(0)
        RECEIVED.append((ctx.step_config.get("name", ""), message, idempotency_key))
        return SendResult(200, "ok")


class MemoryLedger:
    def __init__(self) -> None:
        self.rows: dict[tuple[int, str], DeliveryRecord] = {}

    def get(self, run_id, step_id):
        return self.rows.get((run_id, step_id))

    def begin(self, run_id, step_id, key):
        attempts = (
            self.rows.get((run_id, step_id), DeliveryRecord(DeliveryStatus.SENDING, 0)).attempts + 1
        )
        self.rows[(run_id, step_id)] = DeliveryRecord(DeliveryStatus.SENDING, attempts)
        return attempts

    def acknowledge(self, run_id, step_id, result):
        self.rows[(run_id, step_id)] = DeliveryRecord(
            DeliveryStatus.ACKNOWLEDGED, self.rows[(run_id, step_id)].attempts
        )

    def fail(self, run_id, step_id, *, status, **_):
        self.rows[(run_id, step_id)] = DeliveryRecord(status, self.rows[(run_id, step_id)].attempts)


class NoConnections:
    def resolve(self, connection_id: int) -> ResolvedConnection | None:
        return None


def runner(ledger=None, simulate=False) -> FlowRunner:
    RECEIVED.clear()
    FAILURES.clear()
    return FlowRunner(
        registry=ConnectorRegistry([Recorder]),
        connections=NoConnections(),
        deliveries=ledger if ledger is not None else MemoryLedger(),
        http=None,
        key_prefix="fgtest",
        simulate=simulate,
    )


def flow(*steps: dict, edges: list[tuple[str, str]]) -> FlowDefinition:
    return FlowDefinition.from_json(
        {
            "schema_version": 1,
            "trigger": {"type": "webhook"},
            "steps": list(steps),
            "edges": [{"from": a, "to": b} for a, b in edges],
        }
    )


SPLIT = flow(
    {"id": "big", "type": "filter", "condition": "total > 100"},
    {"id": "shape", "type": "map", "expression": "{'ref': ref}"},
    {"id": "to_a", "type": "deliver", "connector": "recorder", "config": {"name": "a"}},
    {"id": "to_b", "type": "deliver", "connector": "recorder", "config": {"name": "b"}},
    {"id": "raw", "type": "deliver", "connector": "recorder", "config": {"name": "raw"}},
    edges=[
        ("trigger", "big"),
        ("big", "shape"),
        ("shape", "to_a"),
        ("shape", "to_b"),
        ("trigger", "raw"),
    ],
)


def test_fan_out_and_branches_each_get_the_right_message():
    result = runner().run(7, SPLIT, {"ref": "A1", "total": 150})
    assert result.status == RunStatus.SUCCEEDED
    got = {name: (msg, key) for name, msg, key in RECEIVED}
    assert got["a"] == ({"ref": "A1"}, "fgtest-run-7-to_a")
    assert got["b"] == ({"ref": "A1"}, "fgtest-run-7-to_b")
    assert got["raw"][0] == {"ref": "A1", "total": 150}
    assert [s.step_id for s in result.steps] == ["big", "shape", "to_a", "to_b", "raw"]
    assert all(s.duration_ms >= 0 for s in result.steps)


def test_filter_stops_only_its_branch():
    result = runner().run(1, SPLIT, {"ref": "A1", "total": 5})
    assert result.status == RunStatus.SUCCEEDED  # the raw branch still delivered
    assert [name for name, _, _ in RECEIVED] == ["raw"]
    assert result.steps[0].status == StepStatus.FILTERED


def test_all_branches_filtered_means_filtered():
    only = flow(
        {"id": "f", "type": "filter", "condition": "false"},
        {"id": "d", "type": "deliver", "connector": "recorder"},
        edges=[("trigger", "f"), ("f", "d")],
    )
    assert runner().run(1, only, {}).status == RunStatus.FILTERED
    assert RECEIVED == []


def test_retryable_failure_schedules_retry_and_acknowledged_branch_is_skipped_next_time():
    ledger = MemoryLedger()
    r = runner(ledger)
    FAILURES.append(RetryableConnectorError("503 from a", status_code=503, retry_after_seconds=30))
    two = flow(
        {"id": "to_a", "type": "deliver", "connector": "recorder", "config": {"name": "a"}},
        {"id": "to_b", "type": "deliver", "connector": "recorder", "config": {"name": "b"}},
        edges=[("trigger", "to_a"), ("trigger", "to_b")],
    )
    first = r.run(3, two, {"x": 1})
    assert first.status == RunStatus.RETRYING
    assert (
        first.retry_in_seconds is not None and first.retry_in_seconds >= 30
    )  # Retry-After honoured
    assert ledger.get(3, "to_a").status == DeliveryStatus.RETRYING
    assert ledger.get(3, "to_b").status == DeliveryStatus.ACKNOWLEDGED
    second = r.run(3, two, {"x": 1})
    assert second.status == RunStatus.SUCCEEDED
    assert [s.status for s in second.steps] == [StepStatus.SUCCEEDED, StepStatus.SKIPPED]
    assert [name for name, _, _ in RECEIVED] == ["b", "a"]  # b once, a after its retry


def test_permanent_failure_dead_letters_without_retry():
    r = runner()
    FAILURES.append(ConnectorError("422 unknown sku", status_code=422))
    one = flow({"id": "d", "type": "deliver", "connector": "recorder"}, edges=[("trigger", "d")])
    result = r.run(1, one, {})
    assert result.status == RunStatus.DEAD_LETTERED
    assert "permanent" in result.reason and "422 unknown sku" in result.reason
    assert result.steps[0].error["status_code"] == 422


def test_simulated_run_sends_nothing_and_shows_what_would_be_sent():
    result = runner(simulate=True).run(1, SPLIT, {"ref": "A1", "total": 150})
    assert RECEIVED == []
    simulated = {s.step_id: s.output for s in result.steps if s.status == StepStatus.SIMULATED}
    assert simulated["to_a"] == {"ref": "A1"}


def test_backoff_grows_and_is_capped():
    policy = RetryPolicy(max_attempts=10, backoff_seconds=2, max_backoff_seconds=20)
    assert 1 <= backoff_seconds(policy, 1) <= 2
    assert 8 <= backoff_seconds(policy, 4) <= 16
    assert 10 <= backoff_seconds(policy, 9) <= 20


class ClosedGate:
    """A gate that refuses everything, as an open circuit breaker does."""

    def __init__(self) -> None:
        self.done_calls: list[bool] = []

    def admit(self, connection_id):
        from flows.ports import Admission

        return Admission(False, 12.5, "circuit breaker open")

    def done(self, connection_id, admission, *, healthy):
        self.done_calls.append(healthy)


def test_refused_admission_waits_without_using_an_attempt():
    ledger = MemoryLedger()
    r = runner(ledger)
    r.gate = ClosedGate()
    r.connections = type(
        "OneConnection", (), {"resolve": lambda self, cid: ResolvedConnection("recorder", {}, {})}
    )()
    one = flow(
        {"id": "d", "type": "deliver", "connector": "recorder", "connection_id": 4},
        edges=[("trigger", "d")],
    )
    result = r.run(1, one, {})
    assert result.status == RunStatus.RETRYING and result.retry_in_seconds == 12.5
    assert "circuit breaker open" in result.reason
    assert ledger.get(1, "d") is None  # no attempt recorded, nothing sent
    assert RECEIVED == []


class TrialGate:
    """A half-open breaker letting this delivery through as its one trial."""

    def __init__(self) -> None:
        self.done_calls: list[bool] = []

    def admit(self, connection_id):
        from flows.ports import Admission

        return Admission(True, trial=True)

    def done(self, connection_id, admission, *, healthy):
        self.done_calls.append(healthy)


class UncountingLedger(MemoryLedger):
    def fail(self, run_id, step_id, *, status, uncounted=False, **_):
        attempts = self.rows[(run_id, step_id)].attempts - (1 if uncounted else 0)
        self.rows[(run_id, step_id)] = DeliveryRecord(status, attempts)


def test_a_failed_breaker_trial_waits_and_gives_the_attempt_back():
    ledger = UncountingLedger()
    r = runner(ledger)
    r.gate = TrialGate()
    r.connections = type(
        "OneConnection", (), {"resolve": lambda self, cid: ResolvedConnection("recorder", {}, {})}
    )()
    one = flow(
        {
            "id": "d",
            "type": "deliver",
            "connector": "recorder",
            "connection_id": 4,
            "retry": {"max_attempts": 1},
        },
        edges=[("trigger", "d")],
    )
    for _ in range(3):  # picked as the probe three times: still not dead-lettered
        FAILURES.append(RetryableConnectorError("connection refused"))
        result = r.run(1, one, {})
        assert result.status == RunStatus.RETRYING, result.reason
        assert "circuit breaker trial failed" in result.reason
    assert ledger.get(1, "d").attempts == 0 and r.gate.done_calls == [False] * 3
    # A permanent answer from the trial is the run's own failure: dead-lettered at once.
    FAILURES.append(ConnectorError("400 bad request", status_code=400))
    assert r.run(1, one, {}).status == RunStatus.DEAD_LETTERED


def test_no_retry_past_the_max_age():
    r = runner()
    FAILURES.append(RetryableConnectorError("503", status_code=503))
    one = flow(
        {
            "id": "d",
            "type": "deliver",
            "connector": "recorder",
            "retry": {"max_attempts": 10, "max_age_seconds": 60},
        },
        edges=[("trigger", "d")],
    )
    result = r.run(1, one, {}, age_seconds=59.5)
    assert result.status == RunStatus.DEAD_LETTERED and "max age" in result.reason
