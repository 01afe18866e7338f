"""The schedule trigger: its config (cron, time zone, missed policy) and tick computation."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from jsonschema import Draft202012Validator

from connectors.base import ConnectorContext, InboundRequest
from connectors.config import config_problems
from connectors.registry import load_registry
from connectors.schedule import (
    SPEC,
    ScheduleError,
    ScheduleTrigger,
    latest_tick,
    message_for,
    next_ticks,
    semantic_problems,
    tick_key,
)
from flows.validation import validate

LONDON = "Europe/London"


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_spec_is_a_connectionless_trigger_with_a_valid_schema() -> None:
    assert (SPEC.key, SPEC.kind, SPEC.requires_connection) == ("schedule", "trigger", False)
    Draft202012Validator.check_schema(SPEC.step_schema)
    registry = load_registry()
    assert "schedule" in registry and "manual" in registry
    assert registry.spec("manual").kind == "trigger"


def test_schema_accepts_a_full_config_and_refuses_unknown_fields() -> None:
    good = {"cron": "*/15 * * * *", "timezone": LONDON, "missed": "run_once", "payload": {"a": 1}}
    assert config_problems(SPEC.step_schema, good) == []
    assert semantic_problems(good) == []
    bad = {"cron": "* * * * *", "missed": "burst", "payload": [1], "extra": 1}
    assert [p for p, _ in config_problems(SPEC.step_schema, bad)] == [
        "/extra",
        "/missed",
        "/payload",
    ]
    assert [p for p, _ in config_problems(SPEC.step_schema, {})] == ["/cron"]


@pytest.mark.parametrize(
    "cron",
    ["61 * * * *", "* * * *", "0 0 * * * *", "@hourly", "every minute", "* 25 * * *"],
)
def test_bad_cron_expressions_are_problems(cron: str) -> None:
    problems = semantic_problems({"cron": cron})
    assert [p for p, _ in problems] == ["/cron"]


def test_unknown_time_zone_is_a_problem() -> None:
    assert semantic_problems({"cron": "* * * * *", "timezone": "Mars/Olympus"}) == [
        ("/timezone", "unknown time zone 'Mars/Olympus'; use an IANA name such as UTC")
    ]
    assert semantic_problems({"cron": "* * * * *", "timezone": "Europe/London"}) == []


def _doc(config: dict) -> dict:
    return {
        "schema_version": 1,
        "trigger": {"type": "schedule", "config": config},
        "steps": [{"id": "out", "type": "deliver", "connector": "http", "connection_id": 1}],
        "edges": [{"from": "trigger", "to": "out"}],
    }


def test_flow_validation_reports_cron_and_timezone_at_their_pointers() -> None:
    registry = load_registry()
    lookup = {1: "http"}.get
    assert validate(_doc({"cron": "0 6 * * 1-5", "timezone": LONDON}), registry, lookup) == []
    problems = validate(_doc({"cron": "0 6 * *", "timezone": "Nowhere/X"}), registry, lookup)
    assert [(p.path, p.code) for p in problems] == [
        ("/trigger/config/cron", "invalid_config"),
        ("/trigger/config/timezone", "invalid_config"),
    ]
    manual = {**_doc({}), "trigger": {"type": "manual"}}
    assert validate(manual, registry, lookup) == []
    manual["trigger"]["config"] = {"cron": "* * * * *"}
    assert [p.path for p in validate(manual, registry, lookup)] == ["/trigger/config/cron"]


def test_latest_tick_includes_a_tick_exactly_at_now() -> None:
    assert latest_tick("* * * * *", "UTC", _utc(2026, 1, 1, 12, 0)) == _utc(2026, 1, 1, 12, 0)
    assert latest_tick("* * * * *", "UTC", _utc(2026, 1, 1, 12, 0, 59)) == _utc(2026, 1, 1, 12)
    assert latest_tick("0 6 * * *", "UTC", _utc(2026, 1, 1, 5, 59)) == _utc(2025, 12, 31, 6)
    # naive datetimes are UTC, as stored
    assert latest_tick("*/5 * * * *", "UTC", datetime(2026, 1, 1, 12, 7)) == _utc(2026, 1, 1, 12, 5)


def test_next_ticks_follow_the_time_zone() -> None:
    # 06:00 in New York is 11:00 UTC in January (EST, UTC-5)
    [tick] = next_ticks("0 6 * * *", "America/New_York", _utc(2026, 1, 1, 12))
    assert tick.astimezone(UTC) == _utc(2026, 1, 2, 11)
    assert tick.isoformat() == "2026-01-02T06:00:00-05:00"
    with pytest.raises(ScheduleError):
        next_ticks("0 6 * *", "UTC", _utc(2026, 1, 1))
    with pytest.raises(ScheduleError):
        latest_tick("0 6 * * *", "Nowhere/X", _utc(2026, 1, 1))


def test_daily_tick_across_the_spring_forward_in_london() -> None:
    # 2026-03-29 01:00 GMT clocks go to 02:00 BST: 01:30 does not exist that day.
    ticks = next_ticks("30 1 * * *", LONDON, _utc(2026, 3, 27, 12), count=4)
    assert [t.astimezone(UTC) for t in ticks] == [
        _utc(2026, 3, 28, 1, 30),  # GMT: 01:30 local = 01:30 UTC
        _utc(2026, 3, 29, 1, 0),  # the skipped time fires at the first instant after the gap
        _utc(2026, 3, 30, 0, 30),  # BST: 01:30 local = 00:30 UTC
        _utc(2026, 3, 31, 0, 30),
    ]
    assert len({tick_key(t) for t in ticks}) == 4


def test_daily_tick_in_london_keeps_its_wall_clock_time_across_the_fall_back() -> None:
    ticks = next_ticks("0 9 * * *", LONDON, _utc(2026, 10, 24, 12), count=2)
    assert [t.isoformat() for t in ticks] == [
        "2026-10-25T09:00:00+00:00",  # GMT from 25 October
        "2026-10-26T09:00:00+00:00",
    ]
    before = next_ticks("0 9 * * *", LONDON, _utc(2026, 10, 23, 12))[0]
    assert before.isoformat() == "2026-10-24T09:00:00+01:00"  # BST: 08:00 UTC


def test_hourly_ticks_are_one_real_hour_apart_across_the_fall_back() -> None:
    ticks = next_ticks("0 * * * *", LONDON, _utc(2026, 10, 24, 23, 30), count=4)
    utc = [t.astimezone(UTC) for t in ticks]
    assert utc == [_utc(2026, 10, 25, h) for h in range(4)]
    assert [t.hour for t in ticks] == [1, 1, 2, 3]  # local 01:00 happens twice (BST, GMT)
    assert all(b - a == timedelta(hours=1) for a, b in zip(utc, utc[1:], strict=False))


def test_accept_builds_the_tick_message() -> None:
    config = {"cron": "* * * * *", "payload": {"report": "daily"}}
    ctx = ConnectorContext({}, {}, config, logging.getLogger("test"), http=None)
    tick = _utc(2026, 1, 1, 12)
    request = InboundRequest(headers={}, body=b"", payload=tick)
    assert ScheduleTrigger().accept(ctx, request) == [
        {"scheduled_for": "2026-01-01T12:00:00+00:00", "payload": {"report": "daily"}}
    ]
    assert message_for(tick, {"cron": "* * * * *"})["payload"] == {}
    assert tick_key(tick) == "2026-01-01T12:00:00Z"
