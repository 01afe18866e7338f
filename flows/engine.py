"""Run one message through a flow definition, step by step, recording every step.

The message travels along the edges from the trigger; a step with several outgoing edges
fans the message out to each. ``map`` replaces the message, ``filter`` ends its branch when
false, ``deliver`` sends it through a destination connector and passes it on unchanged.
``route`` follows the edges of its first (or, in mode "all", every) matching case, else its
``otherwise`` edge; ``split`` runs the following steps once per item of an array, each item's
executions recorded and delivered as ``<step id>[<index>]`` so keys stay stable per item.

Deliveries go through the ``DeliveryLedger`` so that a retried or recovered run never
re-sends what a destination already acknowledged, and every attempt of one delivery carries
the same idempotency key.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

from connectors.base import ConnectorContext, ConnectorError, Destination, RetryableConnectorError
from connectors.registry import ConnectorRegistry
from flows import canonical, mapping
from flows.definition import OTHERWISE, TRIGGER_NODE_ID, FlowDefinition, RetryPolicy, Step
from flows.ports import Admission, ConnectionResolver, DeliveryGate, DeliveryLedger
from flows.results import DeliveryStatus, RunResult, RunStatus, StepResult, StepStatus
from flows.sandbox import InProcessEvaluator, MappingEvaluator

log = logging.getLogger("flowgate.engine")

# The id of the step being run, for log records (app.logging_setup injects it).
step_context: ContextVar[str | None] = ContextVar("flowgate_step", default=None)


def idempotency_key(key_prefix: str, run_id: int, step_id: str) -> str:
    """Same for every attempt of one delivery; the prefix keeps installations apart."""
    return f"{key_prefix}-run-{run_id}-{step_id}"


def backoff_seconds(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter (AWS style), capped by the policy."""
    ceiling = min(policy.max_backoff_seconds, policy.backoff_seconds * (2 ** (attempt - 1)))
    return (rng or random).uniform(ceiling / 2, ceiling)


def throttled_delay(
    policy: RetryPolicy, attempt: int, hinted: float | None, age_seconds: float
) -> float:
    """How long a delivery answered with 429 waits: at least its Retry-After (``hinted``,
    not capped by ``max_backoff_seconds``: the destination said when), else the backoff.

    A throttled attempt is given back, so it does not grow the backoff; the time the
    message has waited does: a destination throttling without a Retry-After is asked less
    and less often (about doubling, up to ``max_backoff_seconds``)."""
    delay = backoff_seconds(policy, attempt)
    if hinted:
        return max(delay, float(hinted))
    return max(delay, min(age_seconds, policy.max_backoff_seconds))


@dataclass
class _Outcome:
    """What one walk produced, folded into a RunResult at the end."""

    steps: list[StepResult] = field(default_factory=list)
    delivered: int = 0
    retry_delays: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    age_seconds: float = 0.0  # since the message was received (for the max age)
    first_attempt: bool = False  # no delivery of this run recorded yet
    reached: set[str] = field(default_factory=set)  # deliver steps reached in this walk
    filtered: list[str] = field(default_factory=list)  # why a route/split ended a branch


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
        evaluator: MappingEvaluator | None = None,
        gate: DeliveryGate | None = None,
        egress: Any = None,
    ) -> None:
        self.registry = registry
        self.connections = connections
        self.deliveries = deliveries
        self.http = http
        self.key_prefix = key_prefix
        self.limits = limits or mapping.Limits()
        # Runs map and filter steps. Workers pass a flows.sandbox.SandboxedEvaluator (hard
        # limits, with its own Limits); the default evaluates in-process with `limits`.
        self.evaluator = evaluator or InProcessEvaluator(self.limits)
        # A simulated run (editor test run, review dry run) sends nothing: each deliver step
        # records exactly what its destination would receive.
        self.simulate = simulate
        # Circuit breaker and rate/concurrency limits per connection (app.gates in workers).
        self.gate = gate
        self.egress = egress  # connectors.egress.EgressPolicy for non-HTTP connectors

    def run(
        self,
        run_id: int,
        definition: FlowDefinition,
        payload: Any,
        *,
        age_seconds: float = 0.0,
        first_attempt: bool = False,
    ) -> RunResult:
        """``first_attempt``: the run's first claim, never replayed, so the ledger holds no
        delivery of it yet and none is looked up."""
        outcome = _Outcome(age_seconds=age_seconds, first_attempt=first_attempt)
        # (step id, message, item suffix): below a split each item runs as its own message,
        # recorded and delivered as ``<step id>[<item index>]``.
        pending: list[tuple[str, Any, str]] = [
            (child, payload, "") for child in reversed(definition.children(TRIGGER_NODE_ID))
        ]
        while pending:
            step_id, message, suffix = pending.pop()
            step = definition.step(step_id)
            if suffix:
                step = replace(step, id=step_id + suffix)
            result, passes_on, output = self._run_step(run_id, step, message, outcome)
            outcome.steps.append(result)
            if not passes_on:
                continue
            if step.type == "route":
                chosen = set(result.output["cases"])
                for child, case in reversed(definition.branches(step_id)):
                    if case in chosen:
                        pending.append((child, output, suffix))
            elif step.type == "split":
                for index in reversed(range(len(output))):
                    for child in reversed(definition.children(step_id)):
                        pending.append((child, output[index], f"{suffix}[{index}]"))
            else:
                for child in reversed(definition.children(step_id)):
                    pending.append((child, output, suffix))
        return _fold(outcome)

    def _run_step(
        self, run_id: int, step: Step, message: Any, outcome: _Outcome
    ) -> tuple[StepResult, bool, Any]:
        started = time.perf_counter()
        token = step_context.set(step.id)
        try:
            if step.type == "map":
                result, passes_on, output = self._map(step, message, outcome)
            elif step.type == "filter":
                result, passes_on, output = self._filter(step, message, outcome)
            elif step.type == "route":
                result, passes_on, output = self._route(step, message, outcome)
            elif step.type == "split":
                result, passes_on, output = self._split(step, message, outcome)
            else:
                result, passes_on, output = self._deliver(run_id, step, message, outcome)
        finally:
            step_context.reset(token)
        result.duration_ms = round((time.perf_counter() - started) * 1000, 3)
        return result, passes_on, output

    def _map(self, step: Step, message: Any, outcome: _Outcome) -> tuple[StepResult, bool, Any]:
        try:
            output = self.evaluator.evaluate(step.expression or "", message)
        except mapping.MappingError as exc:
            outcome.failures.append(f"step '{step.id}': mapping error {exc.code}: {exc.message}")
            return _failed(step, message, exc.to_dict()), False, None
        return StepResult(step.id, StepStatus.SUCCEEDED, message, output), True, output

    def _filter(self, step: Step, message: Any, outcome: _Outcome) -> tuple[StepResult, bool, Any]:
        try:
            keep = self.evaluator.evaluate_condition(step.condition or "", message)
        except mapping.MappingError as exc:
            outcome.failures.append(f"step '{step.id}': condition error {exc.code}: {exc.message}")
            return _failed(step, message, exc.to_dict()), False, None
        status = StepStatus.SUCCEEDED if keep else StepStatus.FILTERED
        return StepResult(step.id, status, message, {"passed": keep}), keep, message

    def _route(self, step: Step, message: Any, outcome: _Outcome) -> tuple[StepResult, bool, Any]:
        """Output ``{"cases": [...]}``: the branches the message follows (in case order)."""
        matched: list[str] = []
        for case in step.cases:
            try:
                hit = self.evaluator.evaluate_condition(case.condition, message)
            except mapping.MappingError as exc:
                outcome.failures.append(
                    f"step '{step.id}': condition error in case '{case.name}' "
                    f"{exc.code}: {exc.message}"
                )
                return _failed(step, message, {**exc.to_dict(), "case": case.name}), False, None
            if hit:
                matched.append(case.name)
                if step.mode != "all":
                    break
        if not matched and step.otherwise:
            matched.append(OTHERWISE)
        if not matched:
            reason = f"step '{step.id}': no case matched and there is no otherwise branch"
            outcome.filtered.append(reason)
            output = {"cases": [], "reason": "no case matched and there is no otherwise branch"}
            return StepResult(step.id, StepStatus.FILTERED, message, output), False, None
        return StepResult(step.id, StepStatus.SUCCEEDED, message, {"cases": matched}), True, message

    def _split(self, step: Step, message: Any, outcome: _Outcome) -> tuple[StepResult, bool, Any]:
        """Output ``{"items": n}``; the items themselves are the inputs of the next steps."""
        try:
            value = self.evaluator.evaluate(step.expression or "", message)
        except mapping.MappingError as exc:
            outcome.failures.append(f"step '{step.id}': split error {exc.code}: {exc.message}")
            return _failed(step, message, exc.to_dict()), False, None
        # JSONata gives a lone value for a one-item sequence and nothing for no match.
        items = [] if value is None else value if isinstance(value, list) else [value]
        if len(items) > step.max_items:
            message_text = (
                f"the split gives {len(items)} items, more than its limit of {step.max_items}"
            )
            outcome.failures.append(f"step '{step.id}': split_too_many_items: {message_text}")
            error = {
                "code": "split_too_many_items",
                "message": message_text,
                "items": len(items),
                "max_items": step.max_items,
            }
            return _failed(step, message, error), False, None
        if not items:
            reason = "the split expression gave no items"
            outcome.filtered.append(f"step '{step.id}': {reason}")
            output = {"items": 0, "reason": reason}
            return StepResult(step.id, StepStatus.FILTERED, message, output), False, None
        return (
            StepResult(step.id, StepStatus.SUCCEEDED, message, {"items": len(items)}),
            True,
            items,
        )

    def _deliver(
        self, run_id: int, step: Step, message: Any, outcome: _Outcome
    ) -> tuple[StepResult, bool, Any]:
        refused = _refuse_invalid_input(step, message, outcome)
        if refused is not None:
            return refused
        if self.simulate:
            outcome.delivered += 1
            return StepResult(step.id, StepStatus.SIMULATED, message, message), True, message
        assert self.deliveries is not None, "a real run needs a delivery ledger"
        # On a run's first attempt no record of this delivery exists yet, unless the walk
        # already reached this step through another edge (fan-in).
        fresh = outcome.first_attempt and step.id not in outcome.reached
        outcome.reached.add(step.id)
        previous = None if fresh else self.deliveries.get(run_id, step.id)
        if previous is not None and previous.status == DeliveryStatus.ACKNOWLEDGED:
            outcome.delivered += 1
            note = {"skipped": "already acknowledged by the destination on an earlier attempt"}
            return StepResult(step.id, StepStatus.SKIPPED, message, note), True, message
        if previous is not None and previous.status == DeliveryStatus.DEAD_LETTERED:
            outcome.failures.append(f"step '{step.id}': delivery was dead-lettered earlier")
            return _failed(step, message, {"code": "dead_lettered"}), False, None

        key = idempotency_key(self.key_prefix, run_id, step.id)
        try:
            # Storage errors here propagate on purpose: nothing was sent, so the run is
            # re-queued after its lease without using up one of the delivery's attempts.
            connector, ctx = self._connector_for(step)
        except ConnectorError as exc:
            attempt = _begin(self.deliveries, run_id, step.id, key, fresh)
            return self._delivery_failed(run_id, step, message, attempt, exc, outcome)
        admission = self._admit(step)
        if admission is not None and not admission.allowed:
            return self._wait(step, message, admission, outcome)
        attempt = _begin(self.deliveries, run_id, step.id, key, fresh)
        healthy = False
        try:
            sent = connector.send(ctx, message, idempotency_key=key)
            healthy = True
        except ConnectorError as exc:
            # A 4xx is an answer and a 429 a request to slow down: the destination is up.
            healthy = not exc.retryable or _is_throttled(exc)
            exc = _unless_ambiguous(connector, exc)
            trial = admission is not None and admission.trial
            return self._delivery_failed(run_id, step, message, attempt, exc, outcome, trial=trial)
        except Exception as exc:  # a connector bug must cost an attempt, not strand the run
            log.exception("run.connector_crashed run_id=%s step=%s", run_id, step.id)
            crash = RetryableConnectorError(f"unexpected {exc.__class__.__name__} in connector")
            return self._delivery_failed(run_id, step, message, attempt, crash, outcome)
        finally:
            if admission is not None and self.gate is not None:
                self.gate.done(step.connection_id or 0, admission, healthy=healthy)
        self.deliveries.acknowledge(run_id, step.id, sent)
        outcome.delivered += 1
        output = {"status_code": sent.status_code, "idempotency_key": key}
        return StepResult(step.id, StepStatus.SUCCEEDED, message, output), True, message

    def _admit(self, step: Step) -> Admission | None:
        if self.gate is None or step.connection_id is None:
            return None
        return self.gate.admit(step.connection_id)

    def _wait(
        self, step: Step, message: Any, admission: Admission, outcome: _Outcome
    ) -> tuple[StepResult, bool, Any]:
        """The gate said not now (breaker open, limit reached): wait without an attempt."""
        if outcome.age_seconds + admission.wait_seconds > step.retry.max_age_seconds:
            outcome.failures.append(
                f"step '{step.id}': waited past the retry policy's max age ({admission.reason})"
            )
            return (
                _failed(step, message, {"code": "max_age", "message": admission.reason}),
                False,
                None,
            )
        outcome.retry_delays.append(admission.wait_seconds)
        outcome.waiting.append(f"step '{step.id}': waiting: {admission.reason}")
        error = {"code": "waiting", "message": admission.reason}
        return StepResult(step.id, StepStatus.RETRYING, message, None, error), False, None

    def _record_failure(
        self,
        run_id: int,
        step: Step,
        exc: ConnectorError,
        status: DeliveryStatus,
        *,
        uncounted: bool = False,
    ) -> None:
        assert self.deliveries is not None
        self.deliveries.fail(
            run_id,
            step.id,
            status=status,
            error=exc.message,
            response_code=exc.status_code,
            response_excerpt=exc.response_excerpt,
            uncounted=uncounted,
        )

    def _trial_failed(
        self,
        run_id: int,
        step: Step,
        message: Any,
        attempt: int,
        exc: ConnectorError,
        outcome: _Outcome,
    ) -> tuple[StepResult, bool, Any]:
        """The half-open breaker's trial failed: the breaker opens again and this run waits
        like every other run behind it, its attempt given back (see ``Admission.trial``)."""
        self._record_failure(run_id, step, exc, DeliveryStatus.RETRYING, uncounted=True)
        log.info("run.trial_failed run_id=%s step=%s error=%r", run_id, step.id, exc.message)
        wait = max(1.0, backoff_seconds(step.retry, max(attempt - 1, 1)))
        reason = f"circuit breaker trial failed: {exc.message}"
        return self._wait(step, message, Admission(False, wait, reason), outcome)

    def _delivery_failed(
        self,
        run_id: int,
        step: Step,
        message: Any,
        attempt: int,
        exc: ConnectorError,
        outcome: _Outcome,
        *,
        trial: bool = False,
    ) -> tuple[StepResult, bool, Any]:
        if _is_throttled(exc):  # even as a breaker trial: a 429 is healthy, it closes it
            return self._delivery_throttled(run_id, step, message, attempt, exc, outcome)
        if trial and exc.retryable:
            return self._trial_failed(run_id, step, message, attempt, exc, outcome)
        delay = backoff_seconds(step.retry, attempt)
        hinted = getattr(exc, "retry_after_seconds", None)
        if hinted:
            delay = max(delay, min(float(hinted), step.retry.max_backoff_seconds))
        too_old = outcome.age_seconds + delay > step.retry.max_age_seconds
        retry = exc.retryable and attempt < step.retry.max_attempts and not too_old
        status = DeliveryStatus.RETRYING if retry else DeliveryStatus.DEAD_LETTERED
        self._record_failure(run_id, step, exc, status)
        code = AMBIGUOUS_DELIVERY if isinstance(exc, AmbiguousDelivery) else "delivery_failed"
        error = {"code": code, "message": exc.message, "attempt": attempt}
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
            outcome.retry_delays.append(delay)
            return StepResult(step.id, StepStatus.RETRYING, message, None, error), False, None
        if isinstance(exc, AmbiguousDelivery):
            why = AMBIGUOUS_DELIVERY
        elif not exc.retryable:
            why = "permanent error"
        elif too_old:
            why = f"gave up after {attempt} attempts: next retry would pass the max age"
        else:
            why = f"gave up after {attempt} attempts"
        outcome.failures.append(f"step '{step.id}': {why}: {exc.message}")
        return _failed(step, message, error), False, None

    def _delivery_throttled(
        self,
        run_id: int,
        step: Step,
        message: Any,
        attempt: int,
        exc: ConnectorError,
        outcome: _Outcome,
    ) -> tuple[StepResult, bool, Any]:
        """The destination answered 429: it is up and asks us to slow down. The delivery
        waits as long as it asks (its Retry-After, else the backoff), and the wait is bounded
        by the policy's max age, not by ``max_attempts``: the attempt stays recorded (its
        429 and error) but is given back, like a failed breaker trial's."""
        policy = step.retry
        hinted = getattr(exc, "retry_after_seconds", None)
        delay = throttled_delay(policy, attempt, hinted, outcome.age_seconds)
        left = policy.max_age_seconds - outcome.age_seconds
        retry = delay <= left
        # A dead letter keeps its attempt counted: the ledger shows the try that ended it.
        status = DeliveryStatus.RETRYING if retry else DeliveryStatus.DEAD_LETTERED
        self._record_failure(run_id, step, exc, status, uncounted=retry)
        error: dict[str, Any] = {
            "code": "throttled",
            "message": exc.message,
            "attempt": attempt,
            "status_code": exc.status_code,
        }
        if hinted:
            error["retry_after_seconds"] = float(hinted)
        log.info(
            "run.delivery_throttled run_id=%s step=%s attempt=%s retry=%s retry_in=%.1f",
            run_id,
            step.id,
            attempt,
            retry,
            delay,
        )
        if retry:
            outcome.retry_delays.append(delay)
            outcome.waiting.append(
                f"step '{step.id}': throttled by the destination (HTTP 429): next try in"
                f" {delay:.0f} s, not counted as an attempt"
            )
            return StepResult(step.id, StepStatus.RETRYING, message, None, error), False, None
        max_age = policy.max_age_seconds
        why = f"destination kept throttling (HTTP 429) past the max age of {max_age:g} s"
        if hinted and float(hinted) > left:
            why += f": it asked to wait {float(hinted):.0f} s with {max(left, 0):.0f} s left"
        else:
            why += f": the next try would be at age {outcome.age_seconds + delay:.0f} s"
        outcome.failures.append(f"step '{step.id}': {why}")
        return _failed(step, message, {**error, "message": why}), False, None

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
            egress=self.egress,
        )
        return connector, ctx


def _refuse_invalid_input(
    step: Step, message: Any, outcome: _Outcome
) -> tuple[StepResult, bool, Any] | None:
    """The failure of a deliver step whose input cannot be sent, or None when it can.

    Checked before the ledger and the connector: nothing is sent and no attempt is used;
    retrying cannot fix it, so the run is dead-lettered (``invalid_mapping_output``)."""
    if message is None:
        # A mapping that matched nothing (JSONata undefined) or gave null: sending it
        # would deliver a literal null (or an empty row, file or e-mail).
        why = "the message to deliver is empty: the mapping gave no value (undefined or null)"
        outcome.failures.append(f"step '{step.id}': invalid_mapping_output: {why}")
        return (
            _failed(step, message, {"code": "invalid_mapping_output", "message": why}),
            False,
            None,
        )
    if step.input_schema is None:
        return None
    name, version = step.input_schema
    try:
        problems = [p.to_dict() for p in canonical.validate(name, version, message)]
    except canonical.UnknownSchema as exc:
        problems = [{"path": "", "message": str(exc)}]
    if not problems:
        return None
    paths = ", ".join(p["path"] or "/" for p in problems[:10])
    outcome.failures.append(
        f"step '{step.id}': invalid_mapping_output: input does not match "
        f"schema '{name}' v{version} at {paths}"
    )
    error = {
        "code": "invalid_mapping_output",
        "message": f"input does not match canonical schema '{name}' v{version}",
        "schema": {"name": name, "version": version},
        "problems": problems,
    }
    return _failed(step, message, error), False, None


AMBIGUOUS_DELIVERY = "ambiguous_delivery"
HTTP_TOO_MANY_REQUESTS = 429


class AmbiguousDelivery(ConnectorError):
    """A destination without idempotency failed after the message may have been sent: not
    retried blindly (it could arrive twice); the run is dead-lettered for the operator."""


def _is_throttled(exc: ConnectorError) -> bool:
    """A 429 answer: the destination is rate limiting, not failing."""
    return exc.retryable and exc.status_code == HTTP_TOO_MANY_REQUESTS


def _unless_ambiguous(connector: Destination, exc: ConnectorError) -> ConnectorError:
    """``exc``, or an ``AmbiguousDelivery`` when retrying it could duplicate the message."""
    if not (exc.retryable and getattr(exc, "ambiguous", False)):
        return exc  # clear pre-send failures and answered errors keep their verdict
    if connector.spec.idempotency != "none":
        return exc  # the key or the upsert makes a repeat harmless
    return AmbiguousDelivery(
        f"{exc.message}; not retried: '{connector.spec.key}' is not idempotent and the message"
        " may already have been delivered; check at the destination, then replay the dead"
        " letter if it did not arrive",
        status_code=exc.status_code,
        response_excerpt=exc.response_excerpt,
    )


def _begin(ledger: DeliveryLedger, run_id: int, step_id: str, key: str, fresh: bool) -> int:
    # ``new`` only when known fresh, so ledgers without the keyword keep working.
    if fresh:
        return ledger.begin(run_id, step_id, key, new=True)
    return ledger.begin(run_id, step_id, key)


def _failed(step: Step, message: Any, error: dict[str, Any]) -> StepResult:
    return StepResult(step.id, StepStatus.FAILED, message, None, error)


def _fold(outcome: _Outcome) -> RunResult:
    if outcome.retry_delays:
        status, reason = RunStatus.RETRYING, "; ".join(outcome.waiting + outcome.failures) or None
        return RunResult(status, outcome.steps, reason, min(outcome.retry_delays))
    if outcome.failures:
        return RunResult(RunStatus.DEAD_LETTERED, outcome.steps, "; ".join(outcome.failures))
    if outcome.delivered:
        return RunResult(RunStatus.SUCCEEDED, outcome.steps)
    if outcome.filtered:
        return RunResult(RunStatus.FILTERED, outcome.steps, "; ".join(outcome.filtered))
    return RunResult(RunStatus.FILTERED, outcome.steps, "every branch stopped at a filter")
