"""Execute one stored run: claim it, run the engine, record the outcome.

The claim is an atomic compare-and-set in SQL (``RunStore.claim``), so the same run id being
enqueued twice, or re-enqueued by the recovery sweep while a slow worker still holds it, never
executes twice at once; the SQL ledger, not RQ, is the truth.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from flows import mapping
from flows.definition import FlowDefinition
from flows.engine import FlowRunner
from flows.ports import ClaimedRun, RunStore
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
    return _run_claimed(claimed, store=store, runner=runner, commit=True)


def _run_claimed(
    claimed: ClaimedRun, *, store: RunStore, runner: FlowRunner, commit: bool
) -> RunResult | None:
    run_id = claimed.run_id
    run_context.set(RunContext(run_id, claimed.flow, claimed.business_key))
    log.info("run.started run_id=%s attempt=%s", run_id, claimed.attempts)
    try:
        definition = _parsed(claimed.definition)
    except (KeyError, TypeError, ValueError) as exc:
        # Only validated versions go live, so this means a corrupted row: never retry it.
        result = RunResult(RunStatus.DEAD_LETTERED, reason=f"unreadable flow definition: {exc!r}")
    else:
        # The payload comes from the ledger, decoded from stored JSON: the mappings' input
        # check need not walk it (a walk per run was about 5 % of a worker's CPU).
        mapping.known_json(claimed.payload)
        result = runner.run(
            run_id,
            definition,
            claimed.payload,
            age_seconds=claimed.age_seconds,
            first_attempt=claimed.first,
        )
    if not store.finish(claimed, result, commit=commit):
        log.warning("run.lease_lost run_id=%s attempt=%s", run_id, claimed.attempts)
        return None
    log.info("run.finished run_id=%s status=%s", run_id, result.status)
    return result


@dataclass(frozen=True)
class DrainLimits:
    """How a drain job takes work: ``batch`` runs per claim; it claims no new batch after
    ``budget_seconds`` (a successor is woken instead), and a batch that is still running at
    ``release_after_seconds`` (slow destinations) gives back the runs it has not started, so
    that a job stays well inside RQ's job timeout. Leases of runs still waiting in a batch
    are pushed once ``extend_after`` of the lease has passed since their claim. The batch's
    pending writes (outcomes, final writes: ``RunStore.commit``) are flushed at its end, or
    after a run once ``flush_after_seconds`` have passed since the last flush (slow
    destinations), so that a finished run is not left ``running`` for long."""

    batch: int = 16
    budget_seconds: float = 30.0
    release_after_seconds: float = 120.0
    extend_after: float = 0.25
    flush_after_seconds: float = 0.5


def drain(
    *,
    store: RunStore,
    runner: FlowRunner,
    lease_seconds: float,
    limits: DrainLimits = DrainLimits(),
    more_work: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    poll: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Claim and execute queued runs, a batch at a time, until none is left (or the
    budget is spent); returns how many runs this call executed.

    ``poll`` (a lingering job's look for new work, see ``app.worker``): stop after a batch
    that was not full instead of claiming until a claim comes back empty, and leave runs
    that lost a lease to the job's last drain. Under steady traffic each poll then costs
    one claim, not three.

    Commits per batch: the claim; per run its ``sending`` commit; one last commit, which
    carries every run's delivery outcomes and final write (deferred, see
    ``RunStore.finish``). A run's ``sending`` row is still committed before its outbound
    call, and each run's final write is still fenced by its own attempt number.

    ``should_stop`` (the worker was asked to stop: a deploy's SIGTERM): claim no new batch,
    finish the run in flight, give the batch's runs that have not started back to the
    queue (as at ``release_after_seconds``) and return.

    ``more_work`` is called when a batch came back full (more may be waiting: another
    worker can help), when the budget ran out with work left (a successor must come), and
    after a stop: a stopped drain cannot tell whether a run relies on a claim it will not
    make (the wake marker argument in ``app.queues``), so a successor must come.
    """
    started = clock()
    executed = 0
    while clock() - started < limits.budget_seconds and not should_stop():
        batch = store.claim_batch(limits.batch, lease_seconds, crashed=not poll)
        if not batch:
            return executed
        full = len(batch) == limits.batch
        if full and more_work is not None:
            more_work()
        executed += _run_batch(
            batch, store, runner, lease_seconds, limits, started, clock, should_stop
        )
        if poll and not full and not should_stop():
            return executed
    if should_stop():
        log.info("drain.stopped executed=%s", executed)
    if more_work is not None:
        more_work()
    return executed


def _run_batch(
    batch: list[ClaimedRun],
    store: RunStore,
    runner: FlowRunner,
    lease_seconds: float,
    limits: DrainLimits,
    started: float,
    clock: Callable[[], float],
    should_stop: Callable[[], bool],
) -> int:
    claimed_at = flushed_at = clock()
    executed = 0
    try:
        for index, claimed in enumerate(batch):
            if clock() - flushed_at > limits.flush_after_seconds:
                _commit_or_rollback(store)
                flushed_at = clock()
            if should_stop() or clock() - started > limits.release_after_seconds:
                _give_back(batch[index:], store)
                break
            if clock() - claimed_at > limits.extend_after * lease_seconds:
                store.extend_leases([c.run_id for c in batch[index:]], lease_seconds)
                claimed_at = clock()
            token = run_context.set(RunContext(claimed.run_id))
            try:
                _run_claimed(claimed, store=store, runner=runner, commit=False)
                executed += 1
            except Exception:
                # Like a crashed single-run job: this run keeps its lease and the sweep
                # re-queues it when the lease expires. What the batch wrote so far is kept.
                log.exception("run.crashed run_id=%s", claimed.run_id)
                _commit_or_rollback(store)
            finally:
                run_context.reset(token)
    finally:
        _commit_or_rollback(store)
    return executed


def _give_back(waiting: list[ClaimedRun], store: RunStore) -> None:
    """Return claimed runs that have not started to the queue, untouched: nothing was
    written under their claim, and ``RunStore.release`` is fenced by the claim's attempt
    (a run whose lease was taken over meanwhile is left alone). What the batch finished is
    committed first, so a failing release cannot take it along; a run whose release fails
    keeps its lease until the sweep re-queues it, as after a kill."""
    _commit_or_rollback(store)
    log.info("batch.given_back runs=%s first_run_id=%s", len(waiting), waiting[0].run_id)
    for claimed in waiting:
        try:
            store.release(claimed)
        except Exception:
            log.exception("run.release_failed run_id=%s", claimed.run_id)
            _rollback(store)
            return


def _commit_or_rollback(store: RunStore) -> None:
    try:
        store.commit()
    except Exception:
        log.exception("run.batch_commit_failed")
        _rollback(store)


def _rollback(store: RunStore) -> None:
    rollback = getattr(store, "rollback", None)
    if rollback is not None:
        rollback()
