"""Triggers that are not requests: schedules (fired by the scheduler) and manual runs.

Both record their runs through ``intake.record_run``, so the ledger rules are the webhook's.

Schedules, once per scheduler beat (``fire_due_schedules``), for each live version whose
trigger is ``schedule``:

- ``latest`` = the newest cron tick at or before now, in the trigger's time zone;
- ``since`` = the newest tick this flow already fired (the greatest ``schedule`` event id of
  its runs) or, if later, when the version went live; nothing is due unless latest > since;
- on time (now - latest <= 2 x FLOWGATE_SWEEP_INTERVAL_SECONDS): fire ``latest``;
- late (the scheduler was down): ``missed: skip`` fires nothing, ``missed: run_once`` fires
  ``latest`` once. Older missed ticks are never fired: no burst after downtime.

Exactly once per tick, with any number of scheduler processes: a tick's run carries the event
id ``schedule:<flow id>:<tick in UTC>``, and (flow_id, idempotency_key) is unique, so a
second scheduler's insert of the same tick fails and ``record_run`` answers duplicate.

Back-pressure: a due tick of a flow whose backlog passed ``FLOWGATE_MAX_BACKLOG``
(``intake.check_backlog``) is not fired; the reason is kept on the flow's ``PollState``
(``paused_reason``) and logged once. The tick stays due while it is on time, so it fires on a
later beat if the backlog drains within the grace; after that the missed policy decides.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from app.errors import Conflict, Forbidden
from app.extensions import db
from app.models import Flow, FlowVersion, Role, Run, User, VersionStatus
from app.services import audit
from app.services.flows import get_flow, version_with_status
from app.services.intake import Accepted, TooManyRequests, check_backlog, record_run
from app.services.polling import clear_pause, record_pause
from connectors.schedule import latest_tick, message_for, tick_key

log = logging.getLogger("flowgate.triggers")

SCHEDULE_KIND = "schedule"
MANUAL_KIND = "manual"
_MANUAL_ROLES = (Role.OWNER.value, Role.ADMIN.value)


# -- manual runs -------------------------------------------------------------------------


def run_manually(flow_id: int, payload: Any, actor: User) -> Accepted:
    """Record a run of the flow's live version with ``payload`` as the message (owners and
    admins; any trigger type), audited as ``flow.run_manually`` in the run's transaction."""
    if actor.role not in _MANUAL_ROLES:
        raise Forbidden("only integration owners and admins can run a flow by hand")
    flow = get_flow(flow_id)
    version = version_with_status(flow, VersionStatus.LIVE)
    if version is None:
        raise Conflict(f"flow {flow_id} has no live version to run")
    # Recorded first so the event commits with the run (record_run commits); the run itself
    # says trigger_kind=manual, and the event names the flow, version and the caller.
    audit.record(
        actor,
        "flow.run_manually",
        "flow",
        flow.id,
        version=version.number,
        trigger_type=(version.definition.get("trigger") or {}).get("type"),
    )
    accepted = record_run(flow, version, trigger_kind=MANUAL_KIND, message=payload)
    log.info("triggers.manual_run flow=%s run_id=%s", flow.id, accepted.run_id)
    return accepted


# -- schedules ---------------------------------------------------------------------------


def scheduler_now(app: Flask) -> datetime:
    """Now, aware UTC; under FLOWGATE_CLOCK_SCALE (tests only) a clock running that many
    times faster than real time from FLOWGATE_CLOCK_EPOCH, the same in every process."""
    scale = float(app.config.get("FLOWGATE_CLOCK_SCALE") or 1)
    if scale == 1:
        return datetime.now(UTC)
    epoch = float(app.config.get("FLOWGATE_CLOCK_EPOCH") or 0)
    return datetime.fromtimestamp(epoch + (time.time() - epoch) * scale, UTC)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _event_id(flow_id: int, tick: datetime) -> str:
    return f"{SCHEDULE_KIND}:{flow_id}:{tick_key(tick)}"


def _last_fired(flow_id: int) -> datetime | None:
    """The newest tick this flow fired: event ids end in a fixed-width UTC time."""
    prefix = f"{SCHEDULE_KIND}:{flow_id}:"
    key = db.session.execute(
        select(func.max(Run.idempotency_key)).where(
            Run.flow_id == flow_id,
            Run.trigger_kind == SCHEDULE_KIND,
            Run.idempotency_key.startswith(prefix, autoescape=True),
        )
    ).scalar_one_or_none()
    if not key:
        return None
    try:
        return datetime.strptime(key[len(prefix) :], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def due_tick(
    config: dict[str, Any], now: datetime, since: datetime | None, grace: timedelta
) -> datetime | None:
    """The tick to fire now under the trigger's missed policy, or None (see module doc)."""
    latest = latest_tick(config["cron"], config.get("timezone") or "UTC", now)
    if since is not None and _utc(latest) <= _utc(since):
        return None
    if _utc(now) - _utc(latest) <= grace:
        return latest
    return latest if config.get("missed") == "run_once" else None


def _live_schedules() -> list[tuple[Flow, FlowVersion]]:
    rows = db.session.execute(
        select(Flow, FlowVersion)
        .join(FlowVersion, FlowVersion.flow_id == Flow.id)
        .where(FlowVersion.status == VersionStatus.LIVE.value)
        .order_by(Flow.id)
    ).all()
    return [
        (flow, version)
        for flow, version in rows
        if (version.definition.get("trigger") or {}).get("type") == SCHEDULE_KIND
    ]


def fire_due_schedules(app: Flask, now: datetime | None = None) -> dict[str, int]:
    """Record one run per due tick of every live scheduled flow; returns counts.

    Safe to call from several processes at once (see module doc). Needs an app context.
    """
    now = _utc(now or datetime.now(UTC))
    scale = float(app.config.get("FLOWGATE_CLOCK_SCALE") or 1)
    grace = timedelta(seconds=2 * float(app.config["FLOWGATE_SWEEP_INTERVAL_SECONDS"]) * scale)
    counts = {"fired": 0, "duplicates": 0, "failed": 0, "paused": 0}
    for flow, version in _live_schedules():
        flow_id = flow.id
        try:
            config = (version.definition.get("trigger") or {}).get("config") or {}
            since = _last_fired(flow_id)
            if version.live_since is not None:
                live_since = _utc(version.live_since)
                since = live_since if since is None else max(since, live_since)
            tick = due_tick(config, now, since, grace)
            if tick is None:
                continue
            try:
                check_backlog(flow_id)
            except TooManyRequests as exc:
                counts["paused"] += 1
                record_pause(
                    flow_id, SCHEDULE_KIND, f"backlog: {exc}", _utc(now).replace(tzinfo=None)
                )
                continue
            accepted = record_run(
                flow,
                version,
                trigger_kind=SCHEDULE_KIND,
                message=message_for(tick, config),
                event_id=_event_id(flow_id, tick),
            )
        except Exception:  # one broken schedule must not stop the others
            db.session.rollback()
            counts["failed"] += 1
            log.exception("triggers.schedule_failed flow=%s", flow_id)
            continue
        if accepted.duplicate:
            counts["duplicates"] += 1  # another scheduler fired this tick first
        else:
            counts["fired"] += 1
            clear_pause(flow_id)
            log.info(
                "triggers.schedule_fired flow=%s tick=%s run_id=%s",
                flow_id,
                tick_key(tick),
                accepted.run_id,
            )
    return counts
