"""Settings, read from the environment when ``create_app`` runs (never at import time)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from connectors import json_codec

DEFAULT_INSTANCE_PATH = Path(__file__).resolve().parent.parent / "instance"


def _secret_key(instance_path: Path, environ: Mapping[str, str]) -> str:
    """FLOWGATE_SECRET_KEY, else a key generated once and kept in instance/ (mode 0600)."""
    if environ.get("FLOWGATE_SECRET_KEY"):
        return environ["FLOWGATE_SECRET_KEY"]
    key_file = instance_path / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # O_EXCL: if two processes start at once, the loser reads the winner's key.
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return key_file.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() not in {"0", "false", "no", "off"}


def load_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Flask config built from FLOWGATE_* variables, with the documented defaults."""
    env = os.environ if environ is None else environ
    instance_path = Path(env.get("FLOWGATE_INSTANCE_PATH") or DEFAULT_INSTANCE_PATH)
    database_url = env.get("FLOWGATE_DATABASE_URL") or f"sqlite:///{instance_path / 'flowgate.db'}"
    if database_url.startswith("postgresql://") or database_url.startswith("postgres://"):
        # psycopg 3 is the driver we ship; accept the plain URL people copy from their host.
        database_url = "postgresql+psycopg://" + database_url.split("://", 1)[1]
    return {
        "INSTANCE_PATH": str(instance_path),
        "SECRET_KEY": _secret_key(instance_path, env),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "FLOWGATE_PORT": int(env.get("FLOWGATE_PORT") or 5000),
        "FLOWGATE_REDIS_URL": env.get("FLOWGATE_REDIS_URL") or None,
        "FLOWGATE_EGRESS_ALLOW": [
            c.strip() for c in (env.get("FLOWGATE_EGRESS_ALLOW") or "").split(",") if c.strip()
        ],
        "FLOWGATE_DEMO": _flag(env.get("FLOWGATE_DEMO"), True),
        # Folders local file and SQLite connections may use (comma-separated absolute paths).
        "FLOWGATE_FILE_ROOTS": [
            r.strip()
            for r in (env.get("FLOWGATE_FILE_ROOTS") or str(instance_path / "files")).split(",")
            if r.strip()
        ],
        "FLOWGATE_PUBLIC_URL": env.get("FLOWGATE_PUBLIC_URL") or None,
        # Notifications (app.services.notify): SMTP server and sender, governance webhook.
        "FLOWGATE_SMTP_URL": env.get("FLOWGATE_SMTP_URL") or None,
        "FLOWGATE_SMTP_FROM": env.get("FLOWGATE_SMTP_FROM") or "flowgate@localhost",
        "FLOWGATE_NOTIFY_WEBHOOK_URL": env.get("FLOWGATE_NOTIFY_WEBHOOK_URL") or None,
        # Alerts (app.services.alerts): evaluation beat in the scheduler (<= 15 s), global
        # chat webhook every alert is posted to.
        "FLOWGATE_ALERT_INTERVAL_SECONDS": float(env.get("FLOWGATE_ALERT_INTERVAL_SECONDS") or 10),
        "FLOWGATE_ALERT_WEBHOOK_URL": env.get("FLOWGATE_ALERT_WEBHOOK_URL") or None,
        # Bearer token Prometheus sends to /metrics (users' API tokens work too).
        "FLOWGATE_METRICS_TOKEN": env.get("FLOWGATE_METRICS_TOKEN") or None,
        "FLOWGATE_QUEUE_NAME": env.get("FLOWGATE_QUEUE_NAME") or "runs",
        # Run payloads and step I/O are pruned after this many days (runs are kept); 0 = never.
        "FLOWGATE_RETENTION_DAYS": int(env.get("FLOWGATE_RETENTION_DAYS") or 30),
        # Intake limits: bigger or deeper bodies are refused with 413 / 400.
        "FLOWGATE_MAX_BODY_BYTES": int(env.get("FLOWGATE_MAX_BODY_BYTES") or 1_048_576),
        "FLOWGATE_MAX_JSON_DEPTH": int(env.get("FLOWGATE_MAX_JSON_DEPTH") or 64),
        # A drain job that found no more work keeps polling for this long before it ends
        # (app.worker): under steady traffic one RQ job serves many arrivals; 0 = end at once.
        "FLOWGATE_DRAIN_LINGER_SECONDS": float(env.get("FLOWGATE_DRAIN_LINGER_SECONDS") or 1.0),
        # A running run whose lease passed is presumed dead (worker killed) and re-queued.
        "FLOWGATE_RUN_LEASE_SECONDS": float(env.get("FLOWGATE_RUN_LEASE_SECONDS") or 120),
        # Back-pressure: waiting runs per flow before intake answers 429 + Retry-After.
        "FLOWGATE_MAX_BACKLOG": int(env.get("FLOWGATE_MAX_BACKLOG") or 10_000),
        # Circuit breaker per connection: consecutive transient failures before it opens,
        # and how long it stays open before one trial delivery.
        "FLOWGATE_BREAKER_THRESHOLD": int(env.get("FLOWGATE_BREAKER_THRESHOLD") or 5),
        "FLOWGATE_BREAKER_COOLDOWN_SECONDS": float(
            env.get("FLOWGATE_BREAKER_COOLDOWN_SECONDS") or 30
        ),
        # Claims of one run (delivery retries + recoveries) before it is dead-lettered.
        "FLOWGATE_MAX_RUN_ATTEMPTS": int(env.get("FLOWGATE_MAX_RUN_ATTEMPTS") or 25),
        # A queued run not picked up for this long is re-enqueued (crash after commit).
        "FLOWGATE_REQUEUE_AFTER_SECONDS": float(env.get("FLOWGATE_REQUEUE_AFTER_SECONDS") or 30),
        "FLOWGATE_SWEEP_INTERVAL_SECONDS": float(env.get("FLOWGATE_SWEEP_INTERVAL_SECONDS") or 5),
        # Secrets at rest: Fernet keys, newest (primary) first, comma-separated; older ones
        # still decrypt until `flask secrets rotate` re-encrypted everything with the first.
        "FLOWGATE_SECRET_KEYS": [
            k.strip() for k in (env.get("FLOWGATE_SECRET_KEYS") or "").split(",") if k.strip()
        ],
        # A poll claimed by a scheduler that died is taken over after this long.
        "FLOWGATE_POLL_LEASE_SECONDS": float(env.get("FLOWGATE_POLL_LEASE_SECONDS") or 300),
        # Tests only: the scheduler's clock runs this many times faster than real time
        # (from FLOWGATE_CLOCK_EPOCH, a Unix time), so minutes of cron ticks take seconds.
        "FLOWGATE_CLOCK_SCALE": float(env.get("FLOWGATE_CLOCK_SCALE") or 1),
        "FLOWGATE_CLOCK_EPOCH": float(env.get("FLOWGATE_CLOCK_EPOCH") or 0),
        # JSONata runs in killable child processes (flows.sandbox): per-evaluation time limit
        # (hard kill 250 ms later), address-space cap per child, children per process.
        "FLOWGATE_MAPPING_TIMEOUT_MS": int(env.get("FLOWGATE_MAPPING_TIMEOUT_MS") or 1000),
        # The longest a statement waits for a database lock before it fails (SQLite's busy
        # timeout, PostgreSQL's lock_timeout): intake then answers 503 with Retry-After.
        "FLOWGATE_DB_LOCK_TIMEOUT_MS": int(env.get("FLOWGATE_DB_LOCK_TIMEOUT_MS") or 5000),
        "FLOWGATE_MAPPING_MEMORY_MB": int(env.get("FLOWGATE_MAPPING_MEMORY_MB") or 256),
        "FLOWGATE_MAPPING_POOL_SIZE": int(env.get("FLOWGATE_MAPPING_POOL_SIZE") or 2),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        # The API checks CSRF itself, only for cookie-authenticated writes (see app.auth).
        "WTF_CSRF_CHECK_DEFAULT": False,
        "WTF_CSRF_TIME_LIMIT": None,
        # Idle connections are pinged on checkout by app._ping_idle_connections instead.
        # JSON columns through connectors.json_codec: orjson's speed, json's values.
        "SQLALCHEMY_ENGINE_OPTIONS": {
            "pool_pre_ping": False,
            "json_serializer": json_codec.dumps_text,
            "json_deserializer": json_codec.loads,
        },
        # OpenAPI (flask-smorest)
        "API_TITLE": "Flowgate API",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api/v1",
        "OPENAPI_JSON_PATH": "openapi.json",
    }


def postgres_options(config: Mapping[str, Any]) -> dict[str, str]:
    """libpq connection options every PostgreSQL connection of the app gets (the pool's,
    ``app._bound_lock_waits``, and the hot path's own, ``app.stores``): the lock timeout."""
    lock_timeout_ms = int(config["FLOWGATE_DB_LOCK_TIMEOUT_MS"])
    return {"options": f"-c lock_timeout={lock_timeout_ms}"} if lock_timeout_ms > 0 else {}
