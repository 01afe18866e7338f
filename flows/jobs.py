"""RQ job entry points. Jobs take ids only (JSON serializer) and stay thin.

The worker's composition root (``app.worker``) calls ``configure()`` once at start-up with a
function that executes a run id and one that drains the queued runs; nothing is wired at
import time.
"""

from __future__ import annotations

from collections.abc import Callable

_execute: Callable[[int], object] | None = None
_drain: Callable[[int], int] | None = None


def configure(execute: Callable[[int], object], drain: Callable[[int], int] | None = None) -> None:
    """Install the run executor (and the drainer) for this process (worker start-up)."""
    global _execute, _drain
    _execute = execute
    _drain = drain


def _not_configured() -> RuntimeError:
    return RuntimeError("flows.jobs is not configured: start workers with `python -m app.worker`")


def execute_run(run_id: int) -> str:
    """RQ job: execute the run with this id; returns its final status for RQ's result."""
    if _execute is None:
        raise _not_configured()
    result = _execute(int(run_id))
    return getattr(getattr(result, "status", None), "value", "not_claimed")


def drain_runs(slot: int) -> int:
    """RQ job: claim and execute queued runs in batches until none is left; ``slot`` is
    the wake marker this job answers (see ``app.queues``). Returns how many it ran."""
    if _drain is None:
        raise _not_configured()
    return _drain(int(slot))
