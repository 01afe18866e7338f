"""Schedule trigger: start the flow on a cron schedule, in a time zone.

Config (the trigger's ``config`` in a flow definition):

- ``cron``: a standard 5-field expression (minute hour day-of-month month day-of-week),
  evaluated with croniter in ``timezone``. Six-field (seconds) forms and ``@hourly``-style
  aliases are refused.
- ``timezone``: an IANA name (``Europe/London``), default ``UTC``.
- ``missed``: what happens to ticks missed while no scheduler ran (downtime):
  ``skip`` (default) fires nothing for them, ``run_once`` fires the latest missed tick once.
  Never a burst of old ticks, whatever the policy.
- ``payload``: a constant JSON object handed to the flow, default ``{}``.

Each tick becomes one message ``{"scheduled_for": "<tick, ISO 8601 in the time zone>",
"payload": <payload>}``; the scheduler records it with the event id
``schedule:<flow id>:<tick in UTC>`` so a tick runs exactly once, however many schedulers run.

Daylight-saving changes follow croniter: a wall-clock time skipped when clocks go forward
fires at the first instant after the gap (``30 1 * * *`` in Europe/London fires at 02:00 BST
that day); a wall-clock time that occurs twice when clocks go back fires at both occurrences
(01:30 BST and 01:30 GMT). Hourly and minutely schedules keep firing every real hour/minute.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from connectors.base import (
    CheckResult,
    ConnectorContext,
    ConnectorError,
    ConnectorSpec,
    InboundRequest,
    Trigger,
)

MISSED_POLICIES = ("skip", "run_once")

STEP_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "Schedule",
    "properties": {
        "cron": {
            "type": "string",
            "title": "Cron expression",
            "description": "Five fields: minute hour day-of-month month day-of-week, e.g. "
            "'*/15 * * * *' or '0 6 * * 1-5'. Evaluated in the time zone below.",
            "minLength": 1,
            "maxLength": 200,
        },
        "timezone": {
            "type": "string",
            "title": "Time zone",
            "description": "IANA time zone name, e.g. Europe/London.",
            "default": "UTC",
            "minLength": 1,
            "maxLength": 64,
        },
        "missed": {
            "enum": list(MISSED_POLICIES),
            "title": "Missed ticks",
            "description": "After downtime: 'skip' fires nothing for missed ticks, 'run_once' "
            "fires the latest missed tick once. Never more than one.",
            "default": "skip",
        },
        "payload": {
            "type": "object",
            "title": "Payload",
            "description": "Constant JSON object given to the flow as message.payload; the "
            "message is {scheduled_for, payload}.",
            "default": {},
        },
    },
    "required": ["cron"],
    "additionalProperties": False,
}

SPEC = ConnectorSpec(
    key="schedule",
    name="Schedule",
    kind="trigger",
    version=1,
    description="Start the flow on a cron schedule in a time zone; each tick runs exactly "
    "once, with {scheduled_for, payload} as the message.",
    step_schema=STEP_SCHEMA,
    requires_connection=False,
)


class ScheduleError(ConnectorError):
    """The cron expression or time zone cannot be used."""


def zone(name: str) -> ZoneInfo:
    """The ``ZoneInfo`` for an IANA name; ``ScheduleError`` if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ScheduleError(f"unknown time zone '{name}'; use an IANA name such as UTC") from exc


def cron_problem(expression: Any) -> str | None:
    """Why ``expression`` is not a usable 5-field cron expression, or None."""
    if not isinstance(expression, str):
        return "must be a string"
    fields = expression.split()
    if len(fields) != 5:
        return f"needs 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
    if not croniter.is_valid(expression):
        return f"'{expression}' is not a valid cron expression"
    return None


def semantic_problems(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What JSON Schema cannot say: the cron syntax and the time zone, as (pointer, message)."""
    problems: list[tuple[str, str]] = []
    if "cron" in config:
        problem = cron_problem(config["cron"])
        if problem:
            problems.append(("/cron", problem))
    name = config.get("timezone", "UTC")
    if isinstance(name, str):
        try:
            zone(name)
        except ScheduleError as exc:
            problems.append(("/timezone", exc.message))
    return problems


def _aware_utc(value: datetime) -> datetime:
    """Naive datetimes are UTC (as stored); aware ones are converted."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def latest_tick(expression: str, timezone: str, now: datetime) -> datetime:
    """The newest tick at or before ``now``, aware in ``timezone``."""
    problem = cron_problem(expression)
    if problem:
        raise ScheduleError(f"cron: {problem}")
    start = (_aware_utc(now) + timedelta(microseconds=1)).astimezone(zone(timezone))
    tick: datetime = croniter(expression, start).get_prev(datetime)
    return tick


def next_ticks(expression: str, timezone: str, after: datetime, count: int = 1) -> list[datetime]:
    """The ``count`` ticks strictly after ``after``, aware in ``timezone``."""
    problem = cron_problem(expression)
    if problem:
        raise ScheduleError(f"cron: {problem}")
    it = croniter(expression, _aware_utc(after).astimezone(zone(timezone)))
    return [it.get_next(datetime) for _ in range(count)]


def tick_key(tick: datetime) -> str:
    """A tick in UTC, fixed width (sorts chronologically as text): part of the event id."""
    return _aware_utc(tick).strftime("%Y-%m-%dT%H:%M:%SZ")


def message_for(tick: datetime, config: Mapping[str, Any]) -> dict[str, Any]:
    """The message a tick gives the flow."""
    return {"scheduled_for": tick.isoformat(), "payload": dict(config.get("payload") or {})}


class ScheduleTrigger(Trigger):
    """Fired by the scheduler process, not by a request: ``accept`` builds a tick's message."""

    spec = SPEC
    # Called by flow validation after the JSON Schema passed (problems at /trigger/config/...).
    semantic_problems = staticmethod(semantic_problems)

    def check(self, ctx: ConnectorContext) -> CheckResult:
        """No connection to test: with a trigger config, say when it fires next (or why not)."""
        config = ctx.step_config
        if not config.get("cron"):
            return CheckResult(ok=True, message="a schedule needs no connection")
        problems = semantic_problems(config)
        if problems:
            return CheckResult(ok=False, message="; ".join(f"{p}: {m}" for p, m in problems))
        timezone = config.get("timezone") or "UTC"
        tick = next_ticks(str(config["cron"]), timezone, datetime.now(UTC))[0]
        return CheckResult(ok=True, message=f"next tick {tick.isoformat()} ({timezone})")

    def accept(self, ctx: ConnectorContext, request: InboundRequest) -> list[Any]:
        """``request.payload`` is the tick (a datetime or ISO string); one message back."""
        tick = request.payload
        if isinstance(tick, str):
            tick = datetime.fromisoformat(tick)
        if not isinstance(tick, datetime):
            raise ScheduleError("a schedule tick must be a datetime")
        return [message_for(tick, ctx.step_config)]


CONNECTOR = ScheduleTrigger
