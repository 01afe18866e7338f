"""What the engine needs from storage, as Protocols; ``app/stores.py`` implements them.

The engine never imports the web layer or an ORM: the worker's composition root hands it
objects that satisfy these protocols (Kestra's repository interfaces, in Python).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from connectors.base import SendResult
from flows.results import DeliveryStatus, RunResult


@dataclass(frozen=True)
class ResolvedConnection:
    connector_key: str
    config: Mapping[str, Any]
    secrets: Mapping[str, str]


@dataclass(frozen=True)
class DeliveryRecord:
    status: DeliveryStatus
    attempts: int


@dataclass(frozen=True)
class ClaimedRun:
    run_id: int
    attempts: int
    payload: Any
    definition: Mapping[str, Any]
    age_seconds: float = 0.0  # since the message was received
    # For log context only (app.logging_setup): the flow's slug and the run's business key.
    flow: str | None = None
    business_key: str | None = None
    # True on the first claim of a run never replayed: no delivery or step rows exist yet,
    # so the engine need not look for earlier deliveries (saves a SELECT per delivery).
    first: bool = False


class ConnectionResolver(Protocol):
    def resolve(self, connection_id: int) -> ResolvedConnection | None:
        """The connection's config with its secrets decrypted, or None if it is gone."""


class DeliveryLedger(Protocol):
    """One row per (run, destination step): what was sent, acknowledged or given up."""

    def get(self, run_id: int, step_id: str) -> DeliveryRecord | None: ...

    def begin(self, run_id: int, step_id: str, idempotency_key: str, *, new: bool = False) -> int:
        """Record (and commit) an attempt in flight; return its attempt number (1-based).

        ``new``: the caller knows no record exists yet (a run's first claim)."""

    def acknowledge(self, run_id: int, step_id: str, result: SendResult) -> None:
        """Record the destination's acknowledgement. It may be written later rather than at
        once, at the latest before the next delivery goes out (with its ``begin``) or with
        the batch's ``RunStore.commit``: until then the attempt reads ``sending`` in
        storage, which is re-sent with the same idempotency key if the worker dies, while
        ``get`` already answers with the acknowledgement."""

    def fail(
        self,
        run_id: int,
        step_id: str,
        *,
        status: DeliveryStatus,
        error: str,
        response_code: int | None,
        response_excerpt: str,
        uncounted: bool = False,
    ) -> None:
        """``uncounted``: take back the attempt ``begin`` counted (a failed breaker trial, or a
        throttled answer: HTTP 429 waits for its Retry-After without using the retry budget)."""


class RunStore(Protocol):
    def claim(self, run_id: int, lease_seconds: float) -> ClaimedRun | None:
        """Atomically take a queued run (or one whose lease expired); None if not ours."""

    def claim_batch(
        self, limit: int, lease_seconds: float, *, crashed: bool = True
    ) -> list[ClaimedRun]:
        """Atomically take up to ``limit`` queued runs (one statement, one commit), oldest
        first; concurrent callers never get the same run. A run that has lost a lease
        before (``crash_count`` > 0) is only ever claimed alone, so a run that kills its
        worker cannot use up the crash budget of runs that happened to share its batch;
        ``crashed=False`` does not look for one (a second statement when none other is
        queued)."""

    def extend_lease(self, run_id: int, lease_seconds: float) -> None: ...

    def extend_leases(self, run_ids: list[int], lease_seconds: float) -> None:
        """Push the leases of claimed runs still waiting their turn in a batch (committed)."""

    def release(self, claimed: ClaimedRun) -> None:
        """Give a claimed, not yet started run back to the queue (fenced by its attempt)."""

    def commit(self) -> None:
        """Write and commit what is pending (a batch's deferred finishes and delivery
        outcomes); a deferred finish whose fence fails writes nothing of its run's own."""

    def finish(self, claimed: ClaimedRun, result: RunResult, *, commit: bool = True) -> bool:
        """Store step results and the outcome; RETRYING schedules the next attempt.

        ``claimed.attempts`` fences the write: if the lease expired and another worker has
        claimed the run since, nothing is written and False is returned.

        ``commit=False`` (inside a batch): the write is deferred to the next ``commit``,
        which checks the fence; True is returned. A kill before that leaves the run
        ``running``; the sweep re-queues it after its lease and an acknowledged-but-unwritten
        delivery is re-sent with the same idempotency key, as for any kill after the send.
        """


@dataclass(frozen=True)
class Admission:
    """Whether a delivery to a connection may start now; if not, how long to wait."""

    allowed: bool
    wait_seconds: float = 0.0
    reason: str = ""
    token: str = ""  # hand back to ``DeliveryGate.done``
    # A half-open breaker's one trial delivery. If it fails the failure belongs to the
    # breaker, not to the run: the attempt is not counted against the retry policy.
    trial: bool = False
    # The gate saw a healthy connection at admission (no failure counted, breaker closed,
    # no trial): a healthy ``done`` has nothing to reset and may skip its round trip.
    clean: bool = False


class DeliveryGate(Protocol):
    """Circuit breaker plus rate and concurrency limits per connection, shared by workers.

    A refused admission is not an attempt: the delivery waits and is tried later.
    """

    def admit(self, connection_id: int) -> Admission: ...

    def done(self, connection_id: int, admission: Admission, *, healthy: bool) -> None:
        """``healthy`` is False for transient failures (5xx, timeouts, refused connections)."""
