"""The per-connection delivery gate on a real Redis: breaker, rate and concurrency limits."""

from __future__ import annotations

import time

import pytest
import redis

from app.gates import GateLimits, RedisDeliveryGate


@pytest.fixture
def client(redis_url):
    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    yield connection
    connection.flushdb()


def gate(client, limits=GateLimits(), **kwargs):
    return RedisDeliveryGate(client, lambda cid: limits, **kwargs)


def test_breaker_opens_after_threshold_then_one_trial_closes_it(client):
    g = gate(client, threshold=3, cooldown_seconds=0.3)
    for _ in range(3):
        admission = g.admit(7)
        assert admission.allowed
        g.done(7, admission, healthy=False)
    assert g.state(7).state == "open"
    refused = g.admit(7)
    assert not refused.allowed and "open" in refused.reason and 0 < refused.wait_seconds <= 0.3
    time.sleep(0.35)
    trial = g.admit(7)
    assert trial.allowed and trial.trial  # half-open: exactly one trial
    second = g.admit(7)
    assert not second.allowed and "trial" in second.reason
    g.done(7, trial, healthy=True)
    after = g.admit(7)
    assert g.state(7).state == "closed" and after.allowed and not after.trial


def test_failed_trial_reopens_the_breaker(client):
    g = gate(client, threshold=1, cooldown_seconds=0.2)
    g.done(3, g.admit(3), healthy=False)
    time.sleep(0.25)
    trial = g.admit(3)
    assert trial.allowed
    g.done(3, trial, healthy=False)
    assert g.state(3).state == "open"


def test_success_resets_the_consecutive_failure_count(client):
    g = gate(client, threshold=3, cooldown_seconds=10)
    for healthy in (False, False, True, False, False):
        g.done(1, g.admit(1), healthy=healthy)
    assert g.state(1).state == "closed" and g.state(1).consecutive_failures == 2


def test_a_healthy_delivery_on_a_clean_connection_costs_one_round_trip(client, monkeypatch):
    g = gate(client, threshold=2)
    first = g.admit(5)
    assert first.allowed and first.clean

    def no_round_trip(*args, **kwargs):
        raise AssertionError("a clean, healthy done must not reach Redis")

    monkeypatch.setattr(g.redis, "pipeline", no_round_trip)
    g.done(5, first, healthy=True)
    monkeypatch.undo()
    # After a failure the connection is not clean: the next success resets the count.
    g.done(5, g.admit(5), healthy=False)
    dirty = g.admit(5)
    assert dirty.allowed and not dirty.clean
    g.done(5, dirty, healthy=True)
    assert g.state(5).consecutive_failures == 0
    g.done(5, g.admit(5), healthy=False)
    assert g.state(5).state == "closed"  # one failure since the reset, threshold 2


def test_a_clean_reading_is_reused_briefly_without_a_round_trip(client, monkeypatch):
    from app import gates

    g = gate(client, threshold=2)
    assert g.admit(5).clean  # read from Redis, and remembered
    calls: list[str] = []
    real_mget = g.redis.mget
    monkeypatch.setattr(g.redis, "mget", lambda *keys: calls.append("mget") or real_mget(*keys))
    again = g.admit(5)
    assert again.allowed and again.clean and calls == []
    monkeypatch.setattr(gates, "CLEAN_READING_SECONDS", 0.05)
    assert g.admit(5).allowed and calls == []  # still the reading taken before
    time.sleep(0.12)
    assert g.admit(5).allowed and calls == ["mget"]  # too old: read again


def test_a_breaker_opened_elsewhere_is_seen_one_delivery_late_at_most(client):
    mine, other = gate(client, threshold=2, cooldown_seconds=30), gate(client, threshold=2)
    assert mine.admit(9).clean  # a clean reading, reused for a moment
    for _ in range(2):
        other.done(9, other.admit(9), healthy=False)
    assert other.state(9).state == "open"
    late = mine.admit(9)
    assert late.allowed  # within the reuse window: one delivery goes out
    mine.done(9, late, healthy=False)  # it fails: the reading is forgotten
    refused = mine.admit(9)
    assert not refused.allowed and "open" in refused.reason


def test_connections_with_limits_read_redis_every_time(client):
    g = gate(client, GateLimits(rate_per_second=2))
    assert [g.admit(4).allowed for _ in range(3)] == [True, True, False]


def test_concurrency_limit_is_shared_and_released(client):
    first, second = (
        gate(client, GateLimits(max_in_flight=2)),
        gate(client, GateLimits(max_in_flight=2)),
    )
    a, b = first.admit(9), second.admit(9)  # two "workers"
    assert a.allowed and b.allowed
    blocked = first.admit(9)
    assert not blocked.allowed and "concurrency" in blocked.reason
    second.done(9, b, healthy=True)
    assert first.admit(9).allowed


def test_rate_limit_per_second(client):
    g = gate(client, GateLimits(rate_per_second=5))
    while time.time() % 1 > 0.7:  # keep the five admissions inside one second
        time.sleep(0.05)
    allowed = [g.admit(4).allowed for _ in range(7)]
    assert allowed == [True] * 5 + [False] * 2
    refused = g.admit(4)
    assert refused.wait_seconds <= 1.0 and "rate" in refused.reason


def test_connections_are_independent(client):
    g = gate(client, threshold=1, cooldown_seconds=10)
    g.done(1, g.admit(1), healthy=False)
    assert not g.admit(1).allowed and g.admit(2).allowed
