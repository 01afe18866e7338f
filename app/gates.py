"""Per-connection delivery gate in Redis: a circuit breaker, a rate limit and a concurrency
limit, shared by every worker process (the engine sees only ``flows.ports.DeliveryGate``).

Breaker: after ``threshold`` consecutive transient failures the connection opens for
``cooldown`` seconds; then one trial delivery is let through (half-open); its success closes
the breaker, its failure opens it again. Deliveries refused by the gate wait without using up
an attempt of their retry policy, and so does the run whose delivery was the failed trial
(``Admission.trial``): probing the destination is the breaker's job, so a long outage cannot
dead-letter the run that happens to be picked as the probe again and again.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from flows.ports import Admission

# Concurrency slots and the rate window in one atomic step. KEYS: inflight zset, rate counter.
# ARGV: now, slot lease seconds, max in flight (0 = none), rate per second (0 = none), token.
_ADMIT = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local max_in_flight = tonumber(ARGV[3])
if max_in_flight > 0 and redis.call('ZCARD', KEYS[1]) >= max_in_flight then
  return {0, 'concurrency'}
end
local rate = tonumber(ARGV[4])
if rate > 0 then
  local used = redis.call('INCR', KEYS[2])
  if used == 1 then redis.call('EXPIRE', KEYS[2], 2) end
  if used > rate then return {0, 'rate'} end
end
if max_in_flight > 0 then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[5])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 60)
end
return {1, 'ok'}
"""


# How long a clean reading of a connection's breaker is reused by a process (see ``admit``).
CLEAN_READING_SECONDS = 0.1


@dataclass(frozen=True)
class GateLimits:
    rate_per_second: float | None = None
    max_in_flight: int | None = None


@dataclass(frozen=True)
class BreakerState:
    state: str  # closed | open | half_open
    consecutive_failures: int
    open_for_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "consecutive_failures": self.consecutive_failures,
            "open_for_seconds": round(self.open_for_seconds, 1),
        }


class RedisDeliveryGate:
    def __init__(
        self,
        client: redis.Redis,
        limits_for: Any,
        *,
        threshold: int = 5,
        cooldown_seconds: float = 30.0,
        slot_lease_seconds: float = 180.0,
        namespace: str = "flowgate",
    ) -> None:
        self.redis = client
        # Per installation: two Flowgates sharing a Redis must not share breakers.
        self.namespace = namespace
        self.limits_for = limits_for  # connection_id -> GateLimits
        self.threshold = threshold
        self.cooldown = cooldown_seconds
        self.slot_lease = slot_lease_seconds
        self._admit_script = client.register_script(_ADMIT)
        # Connections this process last saw clean (breaker closed, no failure counted):
        # connection id -> until when (monotonic) that reading is used again instead of a
        # Redis round trip. Any failure this process meets forgets it at once.
        self._clean_until: dict[int, float] = {}

    def _key(self, connection_id: int, name: str) -> str:
        return f"{self.namespace}:gate:{connection_id}:{name}"

    def admit(self, connection_id: int) -> Admission:
        """Whether a delivery to the connection may go now.

        A clean reading of the breaker is reused for ``CLEAN_READING_SECONDS`` by this
        process, for connections without limits: the Redis round trip was 8 % of a worker's
        CPU (bench/README.md, round 8). What that can cost: a breaker another worker opens
        in that window is seen by this worker one delivery late at most, since the failure
        of that delivery makes it read Redis again; a delivery admitted just before the
        breaker opened behaves the same without the reuse.
        """
        clean_until = self._clean_until.get(connection_id)
        if clean_until is not None:
            if time.monotonic() < clean_until:
                return Admission(True, clean=True)
            self._clean_until.pop(connection_id, None)  # (threads may share this gate)
        now = time.time()
        # One round trip for both: a connection with no failure counted and a closed breaker
        # is ``clean``, and its healthy ``done`` then resets nothing (see ``done``).
        opened, failures = self.redis.mget(
            self._key(connection_id, "open_until"), self._key(connection_id, "failures")
        )
        opened_until = float(opened or 0)
        clean = not opened_until and not int(failures or 0)
        if now < opened_until:
            return Admission(False, opened_until - now, "circuit breaker open")
        trial = False
        if opened_until:
            # Half-open: exactly one worker gets the trial delivery.
            trial = bool(
                self.redis.set(
                    self._key(connection_id, "trial"), "1", nx=True, ex=int(self.cooldown) + 60
                )
            )
            if not trial:
                return Admission(
                    False, min(self.cooldown, 5.0), "circuit breaker half-open: trial in progress"
                )
        limits = self.limits_for(connection_id)
        if not limits.max_in_flight and not limits.rate_per_second:
            # No limits configured: skip the Lua round trip on the delivery hot path.
            if clean:
                self._clean_until[connection_id] = time.monotonic() + CLEAN_READING_SECONDS
            return Admission(True, trial=trial, clean=clean)
        token = uuid.uuid4().hex
        allowed, why = self._admit_script(
            keys=[
                self._key(connection_id, "inflight"),
                self._key(connection_id, f"rate:{int(now)}"),
            ],
            args=[
                now,
                self.slot_lease,
                limits.max_in_flight or 0,
                limits.rate_per_second or 0,
                token,
            ],
        )
        if not allowed:
            if trial:
                self.redis.delete(self._key(connection_id, "trial"))
            why = why.decode() if isinstance(why, bytes) else why
            wait = 1.0 - (now % 1.0) if why == "rate" else 0.5
            return Admission(False, max(wait, 0.05), f"{why} limit reached")
        return Admission(True, token=token, trial=trial, clean=clean)

    def done(self, connection_id: int, admission: Admission, *, healthy: bool) -> None:
        if not healthy:
            self._clean_until.pop(connection_id, None)
        if healthy and admission.clean and not admission.token:
            # Nothing to reset: the connection was healthy when this delivery was admitted.
            # A failure another worker counts meanwhile is not reset by this success, so
            # "consecutive" failures are counted across such overlaps (a breaker may open one
            # success early); the saving is a Redis round trip per delivery, about 6 % of a
            # worker's CPU (bench/README.md, round 6).
            return
        pipe = self.redis.pipeline()
        if admission.token:
            pipe.zrem(self._key(connection_id, "inflight"), admission.token)
        if healthy:
            pipe.delete(
                self._key(connection_id, "failures"),
                self._key(connection_id, "open_until"),
                self._key(connection_id, "trial"),
            )
            pipe.execute()
            return
        pipe.incr(self._key(connection_id, "failures"))
        pipe.get(self._key(connection_id, "trial"))
        results = pipe.execute()
        failures, trial_held = int(results[-2]), results[-1] is not None
        if trial_held or failures >= self.threshold:
            until = time.time() + self.cooldown
            self.redis.set(
                self._key(connection_id, "open_until"), until, ex=int(self.cooldown) + 3600
            )
            self.redis.delete(self._key(connection_id, "trial"))

    def state(self, connection_id: int) -> BreakerState:
        now = time.time()
        failures = int(self.redis.get(self._key(connection_id, "failures")) or 0)
        opened_until = float(self.redis.get(self._key(connection_id, "open_until")) or 0)
        if now < opened_until:
            return BreakerState("open", failures, opened_until - now)
        if opened_until:
            return BreakerState("half_open", failures, 0.0)
        return BreakerState("closed", failures, 0.0)
