"""Statuses and results shared by the engine, the stores and the API."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"  # waiting for a delivery retry (next_attempt_at)
    SUCCEEDED = "succeeded"
    FILTERED = "filtered"  # every branch stopped at a filter: nothing to deliver
    DEAD_LETTERED = "dead_lettered"  # a step or delivery failed for good; reason recorded
    REJECTED = "rejected"  # refused at intake or before any step ran (e.g. no definition)

    @property
    def is_final(self) -> bool:
        return self in FINAL_RUN_STATUSES


FINAL_RUN_STATUSES = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FILTERED, RunStatus.DEAD_LETTERED, RunStatus.REJECTED}
)


class StepStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FILTERED = "filtered"
    SKIPPED = "skipped"  # delivery already acknowledged on an earlier attempt
    SIMULATED = "simulated"  # test run: what the destination would receive
    RETRYING = "retrying"
    FAILED = "failed"


class DeliveryStatus(StrEnum):
    SENDING = "sending"  # attempt in flight; if the worker dies it is re-sent with the same key
    ACKNOWLEDGED = "acknowledged"
    RETRYING = "retrying"
    DEAD_LETTERED = "dead_lettered"


@dataclass
class StepResult:
    step_id: str
    status: StepStatus
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    duration_ms: float = 0.0


@dataclass
class RunResult:
    status: RunStatus
    steps: list[StepResult] = field(default_factory=list)
    reason: str | None = None
    # Seconds until the earliest pending delivery retry (status RETRYING only).
    retry_in_seconds: float | None = None
