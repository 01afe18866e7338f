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


# --- Reliability case 11: a destination answering 429 (throttling) ---


class OpenGate:
    """A closed breaker letting everything through; records what ``done`` was told."""

    def __init__(self, *, trial: bool = False) -> None:
        self.trial = trial
        self.done_calls: list[bool] = []

    def admit(self, connection_id):
        from flows.ports import Admission

        return Admission(True, trial=self.trial)

    def done(self, connection_id, admission, *, healthy):
        self.done_calls.append(healthy)


def throttled(retry_after: float | None = None) -> RetryableConnectorError:
    return RetryableConnectorError(
        "destination answered HTTP 429; the delivery can be retried",
        status_code=429,
        retry_after_seconds=retry_after,
    )


def throttling_runner(gate=None) -> tuple[FlowRunner, UncountingLedger]:
    ledger = UncountingLedger()
    r = runner(ledger)
    r.gate = gate or OpenGate()
    r.connections = type(
        "OneConnection", (), {"resolve": lambda self, cid: ResolvedConnection("recorder", {}, {})}
    )()
    return r, ledger


def one_delivery(**retry: Any) -> FlowDefinition:
    return flow(
        {
            "id": "d",
            "type": "deliver",
            "connector": "recorder",
            "connection_id": 4,
            "retry": {"max_attempts": 3, **retry},
        },
        edges=[("trigger", "d")],
    )


def test_429_waits_its_retry_after_without_using_an_attempt_or_feeding_the_breaker():
    r, ledger = throttling_runner()
    FAILURES.append(throttled(retry_after=120))
    result = r.run(1, one_delivery(), {})
    assert result.status == RunStatus.RETRYING
    assert result.retry_in_seconds is not None and result.retry_in_seconds >= 120
    assert "throttled" in result.reason and "not counted" in result.reason
    step = result.steps[0]
    assert step.status == StepStatus.RETRYING
    assert step.error["code"] == "throttled" and step.error["status_code"] == 429
    assert step.error["retry_after_seconds"] == 120
    # Recorded (the ledger row holds the 429), then given back: the budget is untouched.
    assert ledger.get(1, "d") == DeliveryRecord(DeliveryStatus.RETRYING, 0)
    assert r.gate.done_calls == [True]  # the destination answered: not a breaker failure


def test_a_long_retry_after_is_not_capped_by_max_backoff():
    r, _ = throttling_runner()
    FAILURES.append(throttled(retry_after=900))
    result = r.run(1, one_delivery(max_backoff_seconds=60), {})
    assert result.status == RunStatus.RETRYING and result.retry_in_seconds >= 900


def test_a_503_with_retry_after_still_uses_an_attempt_and_feeds_the_breaker():
    r, ledger = throttling_runner()
    FAILURES.append(RetryableConnectorError("503", status_code=503, retry_after_seconds=120))
    result = r.run(1, one_delivery(max_backoff_seconds=60), {})
    assert result.status == RunStatus.RETRYING and 60 >= result.retry_in_seconds >= 30
    assert ledger.get(1, "d").attempts == 1 and r.gate.done_calls == [False]


def test_many_429s_beyond_max_attempts_are_not_dead_lettered_within_the_max_age():
    r, ledger = throttling_runner()
    definition = one_delivery()  # max_attempts 3
    age = 0.0
    for _ in range(10):
        FAILURES.append(throttled(retry_after=60))
        result = r.run(1, definition, {}, age_seconds=age)
        assert result.status == RunStatus.RETRYING, result.reason
        age += result.retry_in_seconds
    assert ledger.get(1, "d").attempts == 0 and r.gate.done_calls == [True] * 10
    # The budget is whole: three ordinary failures still get their three attempts.
    for expected in (RunStatus.RETRYING, RunStatus.RETRYING, RunStatus.DEAD_LETTERED):
        FAILURES.append(RetryableConnectorError("503", status_code=503))
        assert r.run(1, definition, {}, age_seconds=age).status == expected
    assert ledger.get(1, "d").attempts == 3


def test_429s_then_success_delivers_once():
    r, ledger = throttling_runner()
    definition = one_delivery()
    for _ in range(5):
        FAILURES.append(throttled(retry_after=1))
        assert r.run(1, definition, {}).status == RunStatus.RETRYING
    result = r.run(1, definition, {})
    assert result.status == RunStatus.SUCCEEDED and len(RECEIVED) == 1
    assert ledger.get(1, "d").status == DeliveryStatus.ACKNOWLEDGED


def test_a_destination_throttling_past_the_max_age_dead_letters_saying_so():
    r, ledger = throttling_runner()
    definition = one_delivery(max_age_seconds=3600)
    age, results = 0.0, []
    while not results or results[-1].status == RunStatus.RETRYING:
        FAILURES.append(throttled(retry_after=500))
        results.append(r.run(1, definition, {}, age_seconds=age))
        age += results[-1].retry_in_seconds or 0
    assert len(results) == 8 and age <= 3600  # 7 waits of 500 s fit, the 8th does not
    assert results[-1].status == RunStatus.DEAD_LETTERED
    assert "destination kept throttling (HTTP 429) past the max age of 3600 s" in (
        results[-1].reason
    )
    assert ledger.get(1, "d") == DeliveryRecord(DeliveryStatus.DEAD_LETTERED, 1)


def test_429_past_the_max_age_dead_letters_saying_it_was_throttled():
    r, ledger = throttling_runner()
    FAILURES.append(throttled())  # no Retry-After: the backoff, which passes the max age
    result = r.run(1, one_delivery(max_age_seconds=3600), {}, age_seconds=3599.9)
    assert result.status == RunStatus.DEAD_LETTERED
    assert "destination kept throttling (HTTP 429) past the max age of 3600 s" in result.reason
    assert result.steps[0].error["code"] == "throttled"
    # The try that ended it stays counted, so the dead letter shows it.
    assert ledger.get(1, "d") == DeliveryRecord(DeliveryStatus.DEAD_LETTERED, 1)
    assert r.gate.done_calls == [True]


def test_429_asking_for_longer_than_the_max_age_left_dead_letters_at_once():
    r, _ = throttling_runner()
    FAILURES.append(throttled(retry_after=7200))
    result = r.run(1, one_delivery(max_age_seconds=3600), {}, age_seconds=10)
    assert result.status == RunStatus.DEAD_LETTERED
    assert "destination kept throttling (HTTP 429) past the max age of 3600 s" in result.reason
    assert "asked to wait 7200 s with 3590 s left" in result.reason


def test_429_without_retry_after_backs_off_more_as_the_message_waits():
    r, _ = throttling_runner()
    FAILURES.append(throttled())
    first = r.run(1, one_delivery(backoff_seconds=2), {}, age_seconds=0)
    assert first.status == RunStatus.RETRYING and 1 <= first.retry_in_seconds <= 2
    FAILURES.append(throttled())
    later = r.run(1, one_delivery(backoff_seconds=2), {}, age_seconds=100)
    assert later.status == RunStatus.RETRYING and later.retry_in_seconds >= 100
    FAILURES.append(throttled())
    capped = r.run(1, one_delivery(max_backoff_seconds=300), {}, age_seconds=5000)
    assert capped.retry_in_seconds == 300  # up to max_backoff_seconds, no further


def test_429_with_an_http_date_retry_after_waits_until_that_date():
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    from connectors.httputil import error_for_status

    when = datetime.now(UTC) + timedelta(seconds=120)
    exc = error_for_status(
        429, {"Retry-After": format_datetime(when, usegmt=True)}, "", lambda text: text
    )
    r, _ = throttling_runner()
    FAILURES.append(exc)
    result = r.run(1, one_delivery(), {})
    assert result.status == RunStatus.RETRYING and result.retry_in_seconds >= 118


def test_a_half_open_trial_answered_429_closes_the_breaker_and_waits_uncounted():
    r, ledger = throttling_runner(OpenGate(trial=True))
    FAILURES.append(throttled(retry_after=30))
    result = r.run(1, one_delivery(), {})
    assert result.status == RunStatus.RETRYING and result.retry_in_seconds >= 30
    assert "throttled" in result.reason
    assert r.gate.done_calls == [True] and ledger.get(1, "d").attempts == 0
