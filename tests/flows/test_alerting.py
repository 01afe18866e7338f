"""Alert rules over plain data: each rule kind, business hours and weekday baselines."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from flows import alerting, reconcile
from flows.alerting import BreakerView, BusinessHours, RunOutcome

BERLIN_WEEKDAYS = {
    "sla": {
        "max_latency_seconds": 60,
        "business_hours": {
            "timezone": "Europe/Berlin",
            "days": [0, 1, 2, 3, 4],
            "start": "08:00",
            "end": "20:00",
        },
    },
    "volume_per_day": 2880,
}


def hours() -> BusinessHours:
    found = BusinessHours.from_contract(BERLIN_WEEKDAYS)
    assert found is not None
    return found


# -- business hours ----------------------------------------------------------------------


def test_business_hours_are_local_time_in_the_contract_zone() -> None:
    h = hours()
    # Wed 2026-11-25: Berlin is UTC+1 in winter, so 08:00 local = 07:00 UTC.
    assert not h.contains(datetime(2026, 11, 25, 6, 59))
    assert h.contains(datetime(2026, 11, 25, 7, 0))
    assert h.contains(datetime(2026, 11, 25, 18, 59))
    assert not h.contains(datetime(2026, 11, 25, 19, 0))
    # Saturday is closed.
    assert not h.contains(datetime(2026, 11, 28, 12, 0))


def test_business_hours_follow_daylight_saving_time() -> None:
    # Wed 2026-07-15: Berlin is UTC+2, so 08:00 local = 06:00 UTC.
    assert hours().contains(datetime(2026, 7, 15, 6, 0))
    assert not hours().contains(datetime(2026, 7, 15, 5, 59))


def test_business_minutes_skip_nights_and_weekends() -> None:
    h = hours()
    # Fri 18:00 UTC (19:00 local) → Mon 08:00 UTC (09:00 local): 60 min Fri + 60 min Mon.
    assert h.minutes_between(datetime(2026, 11, 27, 18, 0), datetime(2026, 11, 30, 8, 0)) == 120
    assert h.minutes_between(datetime(2026, 11, 25, 8, 0), datetime(2026, 11, 25, 8, 0)) == 0


def test_overnight_business_hours_wrap_midnight() -> None:
    night = BusinessHours.from_contract(
        {
            "sla": {
                "business_hours": {"timezone": "UTC", "days": [0], "start": "22:00", "end": "02:00"}
            }
        }
    )
    assert night is not None
    assert night.contains(datetime(2026, 11, 30, 23, 0))  # Monday 23:00
    assert night.contains(datetime(2026, 12, 1, 1, 0))  # still Monday's shift
    assert not night.contains(datetime(2026, 12, 1, 3, 0))


def test_unreadable_business_hours_are_ignored() -> None:
    assert BusinessHours.from_contract(None) is None
    assert BusinessHours.from_contract({"sla": {}}) is None
    bad = {"sla": {"business_hours": {"timezone": "Mars/Olympus", "start": "08:00"}}}
    assert BusinessHours.from_contract(bad) is None


# -- defaults ----------------------------------------------------------------------------


def test_defaults_come_from_the_contract() -> None:
    rules = alerting.default_rules(BERLIN_WEEKDAYS)
    assert rules["latency_p95"]["max_seconds"] == 60
    assert rules["silence"]["enabled"] is True
    assert rules["silence"]["minutes"] == 15  # 2 messages a minute: three gaps, floor 15
    assert rules["volume_anomaly"]["enabled"] is True
    generic = alerting.default_rules(None)
    assert generic["silence"]["enabled"] is False  # no business hours, no silence watch
    assert generic["volume_anomaly"]["enabled"] is False
    assert generic["latency_p95"]["max_seconds"] == 300


def test_overrides_keep_types_and_ignore_unknown_keys() -> None:
    merged = alerting.merge_rules(
        alerting.default_rules(None),
        {"consecutive_failures": {"threshold": 7.0, "bogus": 1}, "silence": {"enabled": True}},
    )
    assert merged["consecutive_failures"]["threshold"] == 7
    assert isinstance(merged["consecutive_failures"]["threshold"], int)
    assert "bogus" not in merged["consecutive_failures"]
    assert merged["silence"]["enabled"] is True


# -- rule kinds --------------------------------------------------------------------------

T0 = datetime(2026, 11, 25, 10, 0)


def outcomes(*failed: bool) -> list[RunOutcome]:
    """Newest first."""
    return [RunOutcome(100 - i, T0 - timedelta(seconds=10 * i), f) for i, f in enumerate(failed)]


def test_consecutive_failures_fire_at_the_threshold_and_date_the_first_failure() -> None:
    finding = alerting.consecutive_failures(outcomes(True, True, True, False, True), 3)
    assert finding.firing
    assert finding.details["streak"] == 3
    assert finding.first_failure_at == T0 - timedelta(seconds=20)  # oldest of the streak
    assert finding.run_id == 100  # newest failing run
    assert not alerting.consecutive_failures(outcomes(True, True, False, True), 3).firing
    assert not alerting.consecutive_failures([], 3).firing


def test_one_success_clears_consecutive_failures() -> None:
    assert not alerting.consecutive_failures(outcomes(False, True, True, True), 3).firing


def test_failure_rate_needs_a_minimum_sample() -> None:
    params = {"window_minutes": 15, "max_percent": 50, "min_runs": 5}
    assert alerting.failure_rate(3, 5, params).firing
    assert not alerting.failure_rate(4, 4, params).firing  # too few runs to judge
    assert not alerting.failure_rate(5, 10, params).firing  # 50% is not above 50%
    assert not alerting.failure_rate(0, 0, params).firing


def test_latency_p95_against_the_sla() -> None:
    params = {"window_minutes": 15, "max_seconds": 60, "min_runs": 5}
    fast = [1.0] * 95 + [500.0] * 5
    assert not alerting.latency_p95(fast, params).firing  # p95 is still 1 s
    slow = [1.0] * 90 + [120.0] * 10
    finding = alerting.latency_p95(slow, params)
    assert finding.firing and finding.details["p95_seconds"] == 120.0
    assert alerting.percentile([], 95) is None
    assert alerting.percentile([3.0], 95) == 3.0


def test_silence_counts_only_business_minutes() -> None:
    h = hours()
    params = {"minutes": 30}
    wed_10 = datetime(2026, 11, 25, 9, 0)  # 10:00 Berlin
    fired = alerting.silence(wed_10 - timedelta(minutes=31), wed_10, h, params)
    assert fired.firing and fired.first_failure_at == wed_10 - timedelta(minutes=31)
    assert not alerting.silence(wed_10 - timedelta(minutes=29), wed_10, h, params).firing
    # Last message Tue 19:50 local; Wed 08:15 local is 10 + 15 business minutes later.
    wed_0815 = datetime(2026, 11, 25, 7, 15)
    assert not alerting.silence(datetime(2026, 11, 24, 18, 50), wed_0815, h, params).firing
    wed_0825 = datetime(2026, 11, 25, 7, 25)
    assert alerting.silence(datetime(2026, 11, 24, 18, 50), wed_0825, h, params).firing


def test_silence_never_fires_outside_business_hours_or_without_them() -> None:
    params = {"minutes": 1}
    saturday = datetime(2026, 11, 28, 12, 0)
    long_ago = saturday - timedelta(days=3)
    assert not alerting.silence(long_ago, saturday, hours(), params).firing
    assert not alerting.silence(long_ago, saturday, None, params).firing


def test_silence_of_a_flow_that_never_received_counts_from_go_live() -> None:
    wed_10 = datetime(2026, 11, 25, 9, 0)
    finding = alerting.silence(
        None, wed_10, hours(), {"minutes": 30}, since=wed_10 - timedelta(hours=1)
    )
    assert finding.firing
    assert not alerting.silence(None, wed_10, hours(), {"minutes": 30}).firing


def test_volume_windows_are_the_same_local_hour_on_previous_same_weekdays() -> None:
    # Mon 2026-03-30 10:20 Berlin (UTC+2, after the DST switch on 29 March).
    now = datetime(2026, 3, 30, 8, 20)
    current, previous = alerting.volume_windows(now, "Europe/Berlin", 2)
    assert current == (datetime(2026, 3, 30, 7, 0), datetime(2026, 3, 30, 8, 0))  # 09-10 local
    # A week earlier Berlin was UTC+1: 09:00 local was 08:00 UTC.
    assert previous[0] == (datetime(2026, 3, 23, 8, 0), datetime(2026, 3, 23, 9, 0))
    assert previous[1] == (datetime(2026, 3, 16, 8, 0), datetime(2026, 3, 16, 9, 0))


def test_volume_anomaly_both_ways_and_only_with_a_baseline() -> None:
    params = {"percent": 50, "weeks": 4, "min_baseline": 20}
    assert alerting.volume_anomaly(10, [100, 100, 100, 100], params).firing
    high = alerting.volume_anomaly(300, [100, 100, 100, 100], params)
    assert high.firing and "above" in high.summary
    assert not alerting.volume_anomaly(120, [100, 100, 100, 100], params).firing
    assert not alerting.volume_anomaly(0, [5, 5, 5, 5], params).firing  # too small to judge
    assert not alerting.volume_anomaly(0, [], params).firing


def test_dead_letter_growth() -> None:
    params = {"window_minutes": 15, "threshold": 5}
    assert alerting.dead_letter_growth(5, params).firing
    assert not alerting.dead_letter_growth(4, params).firing


def test_breaker_open_names_the_system() -> None:
    closed = BreakerView(1, "Demo OMS", "OMS", "closed", 0)
    tripped = BreakerView(2, "ERP API", "ERP", "open", 5)
    finding = alerting.breaker_open([closed, tripped])
    assert finding.firing and "ERP" in finding.summary
    assert finding.details["connections"] == [{"id": 2, "name": "ERP API", "state": "open"}]
    assert not alerting.breaker_open([closed]).firing


# -- reconciliation arithmetic -----------------------------------------------------------


def test_reconcile_totals_and_differences() -> None:
    totals = reconcile.totals({"succeeded": 8, "filtered": 1, "dead_lettered": 2, "retrying": 1})
    assert totals == {
        "received": 12,
        "delivered": 8,
        "filtered": 1,
        "dead_lettered": 2,
        "pending": 1,
        "rejected": 0,
        "difference": 3,
    }
    rows = [
        {"run_id": 1, "business_key": "A", "status": "succeeded"},
        {"run_id": 2, "business_key": "B", "status": "dead_lettered", "reason": "HTTP 503"},
    ]
    assert reconcile.differences(rows) == [
        {"business_key": "B", "run_id": 2, "status": "dead_lettered", "reason": "HTTP 503"}
    ]


@pytest.mark.parametrize(
    ("tolerance", "ok"),
    [(0, False), (1, False), (2, True)],
)
def test_compare_ids_with_tolerance(tolerance: int, ok: bool) -> None:
    result = reconcile.compare_ids(["1", "2", 3], [1, "2", "4"], tolerance)
    assert result.missing == ["3"]
    assert result.unexpected == ["4"]
    assert result.ok is ok


def test_day_bounds_are_local_days() -> None:
    start, end = reconcile.day_bounds(datetime(2026, 11, 25).date(), "Europe/Berlin")
    assert start == datetime(2026, 11, 24, 23, 0)
    assert end == datetime(2026, 11, 25, 23, 0)


def test_always_open_hours_cover_every_minute() -> None:
    always = BusinessHours.always()
    assert always.contains(datetime(2026, 11, 28, 3, 0))  # a Saturday night
    assert (
        always.minutes_between(datetime(2026, 11, 28, 0, 0), datetime(2026, 11, 29, 0, 0)) == 1440
    )
