"""Execute one stored run: claim it, run the engine, record the outcome.

The claim is an atomic compare-and-set in SQL (``RunStore.claim``), so the same run id being
enqueued twice, or re-enqueued by the recovery sweep while a slow worker still holds it, never
executes twice at once; the SQL ledger, not RQ, is the truth.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from flows.definition import FlowDefinition
from flows.engine import FlowRunner
from flows.ports import RunStore
from flows.results import RunResult, RunStatus

log = logging.getLogger("flowgate.execution")


@dataclass(frozen=True)
class RunContext:
    """What every log record written while a run executes is tagged with (never payloads)."""

    run_id: int
    flow: str | None = None  # the flow's slug
    business_key: str | None = None


run_context: ContextVar[RunContext | None] = ContextVar("flowgate_run", default=None)


# Parsed definitions by the identity of the stored dict: a store that caches definitions
# (app.stores.SqlRunStore) hands back the same dict object, so it is parsed once. The dict
# is kept referenced with its parse, so its id cannot be reused while the entry lives.
_PARSED: dict[int, tuple[Mapping[str, Any], FlowDefinition]] = {}
_PARSED_MAX = 128


def _parsed(raw: Mapping[str, Any]) -> FlowDefinition:
    entry = _PARSED.get(id(raw))
    if entry is not None and entry[0] is raw:
        return entry[1]
    definition = FlowDefinition.from_json(raw)
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.pop(next(iter(_PARSED)))
    _PARSED[id(raw)] = (raw, definition)
    return definition


def execute_run(
    run_id: int, *, store: RunStore, runner: FlowRunner, lease_seconds: float
) -> RunResult | None:
    """Run ``run_id`` if it is ours to run; None when another worker has it or it is done."""
    token = run_context.set(RunContext(run_id))
    try:
        return _execute(run_id, store=store, runner=runner, lease_seconds=lease_seconds)
    finally:
        run_context.reset(token)


def _execute(
    run_id: int, *, store: RunStore, runner: FlowRunner, lease_seconds: float
) -> RunResult | None:
    claimed = store.claim(run_id, lease_seconds)
    if claimed is None:
        log.info("run.not_claimed run_id=%s", run_id)
        return None
    run_context.set(RunContext(run_id, claimed.flow, claimed.business_key))
    log.info("run.started run_id=%s attempt=%s", run_id, claimed.attempts)
    try:
        definition = _parsed(claimed.definition)
    except (KeyError, TypeError, ValueError) as exc:
        # Only validated versions go live, so this means a corrupted row: never retry it.
        result = RunResult(RunStatus.DEAD_LETTERED, reason=f"unreadable flow definition: {exc!r}")
    else:
        result = runner.run(
            run_id,
            definition,
            claimed.payload,
            age_seconds=claimed.age_seconds,
            first_attempt=claimed.first,
        )
    if not store.finish(claimed, result):
        log.warning("run.lease_lost run_id=%s attempt=%s", run_id, claimed.attempts)
        return None
    log.info("run.finished run_id=%s status=%s", run_id, result.status)
    return result
