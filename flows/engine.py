"""Run one message through a flow definition, step by step, recording every step.

The message travels along the edges from the trigger; a step with several outgoing edges
fans the message out to each. ``map`` replaces the message, ``filter`` ends its branch when
false, ``deliver`` sends it through a destination connector and passes it on unchanged.

Deliveries go through the ``DeliveryLedger`` so that a retried or recovered run never
re-sends what a destination already acknowledged, and every attempt of one delivery carries
the same idempotency key.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.base import ConnectorContext, ConnectorError, Destination, RetryableConnectorError
from connectors.registry import ConnectorRegistry
from flows import mapping
from flows.definition import TRIGGER_NODE_ID, FlowDefinition, RetryPolicy, Step
from flows.ports import ConnectionResolver, DeliveryLedger
from flows.results import DeliveryStatus, RunResult, RunStatus, StepResult, StepStatus

log = logging.getLogger("flowgate.engine")


def idempotency_key(key_prefix: str, run_id: int, step_id: str) -> str:
    """Same for every attempt of one delivery; the prefix keeps installations apart."""
    return f"{key_prefix}-run-{run_id}-{step_id}"


def backoff_seconds(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter (AWS style), capped by the policy."""
    ceiling = min(policy.max_backoff_seconds, policy.backoff_seconds * (2 ** (attempt - 1)))
    return (rng or random).uniform(ceiling / 2, ceiling)


@dataclass
class _Outcome:
    """What one walk produced, folded into a RunResult at the end."""

    steps: list[StepResult] = field(default_factory=list)
    delivered: int = 0
    retry_delays: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class FlowRunner:
    """Executes definitions; one instance per worker process (it keeps an HTTP pool)."""

    def __init__(
        self,
        *,
        registry: ConnectorRegistry,
        connections: ConnectionResolver,
        deliveries: DeliveryLedger | None,
        http: Any,
        key_prefix: str,
        limits: mapping.Limits | None = None,
        simulate: bool = False,
    ) -> None:
        self.registry = registry
        self.connections = connections
        self.deliveries = deliveries
        self.http = http
        self.key_prefix = key_prefix
        self.limits = limits or mapping.Limits()
        # A simulated run (editor test run, review dry run) sends nothing: each deliver step
        # records exactly what its destination would receive.
        self.simulate = simulate

    def run(self, run_id: int, definition: FlowDefinition, payload: Any) -> RunResult:
        outcome = _Outcome()
        pending: list[tuple[str, Any]] = [
            (child, payload) for child in reversed(definition.children(TRIGGER_NODE_ID))
        ]
        while pending:
            step_id, message = pending.pop()
            step = definition.step(step_id)
            result, passes_on, output = self._run_step(run_id, step, message, outcome)
            outcome.steps.append(result)
            if passes_on:
                for child in reversed(definition.children(step_id)):
                    pending.append((child, output))
        return _fold(outcome)

    def _run_step(
        self, run_id: int, step: Step, message: Any, outcome: _Outcome
    ) -> tuple[StepResult, bool, Any]:
        started = time.perf_counter()
        if step.type == "map":
            result, passes_on, output = self._map(step, message, outcome)
        elif step.type == "filter":
            result, passes_on, output = self._filter(step, message, outcome)
        else:
            result, passes_on, output = self._deliver(run_id, step, message, outcome)
        result.duration_ms = round((time.perf_counter() - started) * 1000, 3)
        return result, passes_on, output

    def _map(self, step: Step, message: Any, outcome: _Outcome) -> tuple[StepResult, bool, Any]:
        try:
            output = mapping.evaluate(step.expression or "", message, limits=self.limits)
        except mapping.MappingError as exc:
            outcome.failures.append(f"step '{step.id}': mapping error {exc.code}: {exc.message}")
            return _failed(step, message, exc.to_dict()), False, None
        return StepResult(step.id, StepStatus.SUCCEEDED, message, output), True, output

    def _filter(self, step: Step, message: Any, outcome: _Outcome) -> tuple[StepResult, bool, Any]:
        try:
            keep = mapping.evaluate_condition(step.condition or "", message, limits=self.limits)
        except mapping.MappingError as exc:
            outcome.failures.append(f"step '{step.id}': condition error {exc.code}: {exc.message}")
            return _failed(step, message, exc.to_dict()), False, None
        status = StepStatus.SUCCEEDED if keep else StepStatus.FILTERED
        return StepResult(step.id, status, message, {"passed": keep}), keep, message

    def _deliver(
        self, run_id: int, step: Step, message: Any, outcome: _Outcome
    ) -> tuple[StepResult, bool, Any]:
        if self.simulate:
            outcome.delivered += 1
            return StepResult(step.id, StepStatus.SIMULATED, message, message), True, message
        assert self.deliveries is not None, "a real run needs a delivery ledger"
        previous = self.deliveries.get(run_id, step.id)
        if previous is not None and previous.status == DeliveryStatus.ACKNOWLEDGED:
            outcome.delivered += 1
            note = {"skipped": "already acknowledged by the destination on an earlier attempt"}
            return StepResult(step.id, StepStatus.SKIPPED, message, note), True, message
        if previous is not None and previous.status == DeliveryStatus.DEAD_LETTERED:
            outcome.failures.append(f"step '{step.id}': delivery was dead-lettered earlier")
            return _failed(step, message, {"code": "dead_lettered"}), False, None

        key = idempotency_key(self.key_prefix, run_id, step.id)
        attempt = self.deliveries.begin(run_id, step.id, key)
        try:
            connector, ctx = self._connector_for(step)
            sent = connector.send(ctx, message, idempotency_key=key)
        except ConnectorError as exc:
            return self._delivery_failed(run_id, step, message, attempt, exc, outcome)
        except Exception as exc:  # a connector bug must cost an attempt, not strand the run
            log.exception("run.connector_crashed run_id=%s step=%s", run_id, step.id)
            crash = RetryableConnectorError(f"unexpected {exc.__class__.__name__} in connector")
            return self._delivery_failed(run_id, step, message, attempt, crash, outcome)
        self.deliveries.acknowledge(run_id, step.id, sent)
        outcome.delivered += 1
        output = {"status_code": sent.status_code, "idempotency_key": key}
        return StepResult(step.id, StepStatus.SUCCEEDED, message, output), True, message

    def _delivery_failed(
        self,
        run_id: int,
        step: Step,
        message: Any,
        attempt: int,
        exc: ConnectorError,
        outcome: _Outcome,
    ) -> tuple[StepResult, bool, Any]:
        retry = exc.retryable and attempt < step.retry.max_attempts
        status = DeliveryStatus.RETRYING if retry else DeliveryStatus.DEAD_LETTERED
        assert self.deliveries is not None
        self.deliveries.fail(
            run_id,
            step.id,
            status=status,
            error=exc.message,
            response_code=exc.status_code,
            response_excerpt=exc.response_excerpt,
        )
        error = {"code": "delivery_failed", "message": exc.message, "attempt": attempt}
        if exc.status_code is not None:
            error["status_code"] = exc.status_code
        log.info(
            "run.delivery_failed run_id=%s step=%s attempt=%s retry=%s error=%r",
            run_id,
            step.id,
            attempt,
            retry,
            exc.message,
        )
        if retry:
            delay = backoff_seconds(step.retry, attempt)
            hinted = getattr(exc, "retry_after_seconds", None)
            if hinted:
                delay = max(delay, min(float(hinted), step.retry.max_backoff_seconds))
            outcome.retry_delays.append(delay)
            return StepResult(step.id, StepStatus.RETRYING, message, None, error), False, None
        why = "permanent error" if not exc.retryable else f"gave up after {attempt} attempts"
        outcome.failures.append(f"step '{step.id}': {why}: {exc.message}")
        return _failed(step, message, error), False, None

    def _connector_for(self, step: Step) -> tuple[Destination, ConnectorContext]:
        connector = self.registry.create(step.connector or "")
        if not isinstance(connector, Destination):
            raise ConnectorError(f"'{step.connector}' is not a destination")
        config: Mapping[str, Any] = {}
        secrets: Mapping[str, str] = {}
        if step.connection_id is not None:
            resolved = self.connections.resolve(step.connection_id)
            if resolved is None:
                raise ConnectorError(f"connection {step.connection_id} no longer exists")
            config, secrets = resolved.config, resolved.secrets
        ctx = ConnectorContext(
            connection_config=config,
            secrets=secrets,
            step_config=step.config,
            logger=logging.getLogger(f"flowgate.connector.{connector.spec.key}"),
            http=self.http,
        )
        return connector, ctx


def _failed(step: Step, message: Any, error: dict[str, Any]) -> StepResult:
    return StepResult(step.id, StepStatus.FAILED, message, None, error)


def _fold(outcome: _Outcome) -> RunResult:
    if outcome.retry_delays:
        status, reason = RunStatus.RETRYING, "; ".join(outcome.failures) or None
        return RunResult(status, outcome.steps, reason, min(outcome.retry_delays))
    if outcome.failures:
        return RunResult(RunStatus.DEAD_LETTERED, outcome.steps, "; ".join(outcome.failures))
    if outcome.delivered:
        return RunResult(RunStatus.SUCCEEDED, outcome.steps)
    return RunResult(RunStatus.FILTERED, outcome.steps, "every branch stopped at a filter")
