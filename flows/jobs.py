"""RQ job entry points. Jobs take ids only (JSON serializer) and stay thin.

The worker's composition root (``app.worker``) calls ``configure()`` once at start-up with a
function that executes a run id; nothing is wired at import time.
"""

from __future__ import annotations

from collections.abc import Callable

_execute: Callable[[int], object] | None = None


def configure(execute: Callable[[int], object]) -> None:
    """Install the run executor for this process (called by the worker at start-up)."""
    global _execute
    _execute = execute


def execute_run(run_id: int) -> str:
    """RQ job: execute the run with this id; returns its final status for RQ's result."""
    if _execute is None:
        raise RuntimeError(
            "flows.jobs is not configured: start workers with `python -m app.worker`"
        )
    result = _execute(int(run_id))
    return getattr(getattr(result, "status", None), "value", "not_claimed")
