"""What the benchmark scripts share to bring a Flowgate stack up as real processes and talk to
it: the ``flask`` CLI, the processes' environment, a throwaway PostgreSQL database, readiness
waits, a graceful stop and an API client with a user's token (bench/throughput.py and
bench/acceptance.py; each keeps its own ``Stack`` for what differs)."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from tests.support.processes import Processes, clean_env, http, wait_for

ROOT = Path(__file__).resolve().parent.parent


class StackError(Exception):
    """The stack could not be set up, or the API did not answer as wanted."""


def psycopg_url(url: str) -> str:
    """SQLAlchemy needs the driver named: ``postgresql://`` → ``postgresql+psycopg://``."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class Placed(Protocol):
    """Where a stack lives: its database, Redis, temp folder, queue name and web port."""

    db_url: str
    redis_url: str
    tmp: Path
    queue: str
    web_port: int


def app_env(stack: Placed, **settings: str) -> dict[str, str]:
    """The environment of every process of ``stack`` (web, workers, scheduler, the CLI);
    ``settings`` add or override variables."""
    return clean_env(
        **{
            "FLOWGATE_DATABASE_URL": stack.db_url,
            "FLOWGATE_REDIS_URL": stack.redis_url,
            "FLOWGATE_INSTANCE_PATH": str(stack.tmp / "instance"),
            "FLOWGATE_SECRET_KEY": secrets.token_urlsafe(32),
            "FLOWGATE_DEMO": "0",
            "FLOWGATE_EGRESS_ALLOW": "127.0.0.0/8",
            "FLOWGATE_QUEUE_NAME": stack.queue,
            "FLOWGATE_LOG_LEVEL": "INFO",
            "FLOWGATE_PORT": str(stack.web_port),
            **settings,
        }
    )


def flask(env: dict[str, str], *cli: str, timeout: float = 180) -> str:
    """``flask --app app <cli>`` in a subprocess; its stdout, or StackError with its output."""
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *cli],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise StackError(f"flask {' '.join(cli[:2])} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def user_token(env: dict[str, str], role: str, email: str, password: str) -> str:
    """Create a user through the CLI and return an API token for it."""
    flask(env, "users", "create", email, "--role", role, "--password", password)
    return flask(env, "users", "token", email).strip().splitlines()[-1].strip()


def create_database(admin_url: str, name: str) -> str:
    """Create the PostgreSQL database ``name`` next to ``admin_url``'s; returns its URL."""
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return f"{admin_url.rsplit('/', 1)[0]}/{name}"


def drop_database(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


def wait_healthy(procs: Processes, base: str, timeout: float) -> None:
    def healthy() -> bool:
        procs.check_alive()
        return http("GET", f"{base}/healthz", timeout=2)[0] == 200

    wait_for(healthy, timeout=timeout, what="/healthz", interval=0.2, on_timeout=procs.logs)


def wait_workers(procs: Processes, redis_url: str, queue: str, n: int, timeout: float) -> None:
    """Workers register with RQ once they have imported the app."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        wait_for(
            lambda: procs.check_alive() or client.scard(f"rq:workers:{queue}") >= n,
            timeout=timeout,
            what=f"{n} workers to register",
            interval=0.2,
            on_timeout=procs.logs,
        )
    finally:
        client.close()


def stop_gracefully(procs: Processes, grace: float = 5) -> None:
    """SIGTERM first (RQ workers deregister on a warm shutdown), then SIGKILL every group."""
    for proc in procs.procs:
        if proc.alive():
            proc.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(p.alive() for p in procs.procs):
        time.sleep(0.1)
    procs.stop_all()


class Api:
    """The web process's JSON API as one user (a Bearer token)."""

    def __init__(self, base: str, token: str, timeout: float = 60) -> None:
        self.base = base
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        status, data = self.raw(method, path, body)
        if status != expect:
            raise StackError(f"{method} {path} -> {status} (wanted {expect}): {data!r:.2000}")
        return data

    def raw(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body).encode()
        status, _, raw = http(
            method, self.base + path, body=payload, headers=self.headers, timeout=self.timeout
        )
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw
