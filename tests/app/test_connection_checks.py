"""``Test connection`` for EVERY connector in the registry, through the API the editor uses
(``POST /api/v1/connections/<id>/test``): success against a real local server, and a failure
whose message says why. A connector added to the registry without a case here fails
``test_every_registered_connector_has_a_case``.

Real servers: an HTTP sink and a paginated API (threads), RabbitMQ (127.0.0.1:5672
guest/guest), Redis (127.0.0.1:6379), an SMTP server and an SFTP server (threads), PostgreSQL
and SQLite files for the SQL connectors.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app import runtime
from connectors.base import ConnectorContext
from tests.support.paged_api import PagedApi
from tests.support.sftp_server import SFTPTestServer
from tests.support.smtp_server import SMTPTestServer


@dataclass
class Servers:
    http: str
    paged: str
    smtp_port: int
    sftp_port: int
    sftp_host_key: str
    sqlite_path: str
    files: str
    closed_port: int


@dataclass
class Case:
    config: dict[str, Any]
    secrets: dict[str, str]


@pytest.fixture
def servers(sink: Any, tmp_path: Path, app: Any) -> Iterator[Servers]:
    paged = PagedApi().start()
    smtp = SMTPTestServer()
    smtp.start()
    (tmp_path / "sftp" / "upload").mkdir(parents=True)
    sftp = SFTPTestServer(tmp_path / "sftp", password="sftp-pass").start()
    root = Path(app.config["FLOWGATE_FILE_ROOTS"][0])
    (root / "out").mkdir(parents=True, exist_ok=True)
    db_path = root / "shop.db"
    sqlite3.connect(db_path).execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    try:
        yield Servers(
            http=sink.url,
            paged=paged.url,
            smtp_port=smtp.port,
            sftp_port=sftp.port,
            sftp_host_key=sftp.host_key_line,
            sqlite_path=str(db_path),
            files=str(root / "out"),
            closed_port=closed,
        )
    finally:
        paged.stop()
        smtp.stop()
        sftp.stop()


RABBIT = {"host": "127.0.0.1", "port": 5672, "username": "guest", "connect_timeout_seconds": 3}
REDIS = {"host": "127.0.0.1", "port": 6379, "db": 5, "timeout_seconds": 3}
PG = {"dialect": "postgresql", "host": "127.0.0.1", "port": 5432, "database": "test"}


def _sftp(s: Servers) -> dict[str, Any]:
    return {
        "transport": "sftp",
        "host": "127.0.0.1",
        "port": s.sftp_port,
        "username": "flowgate",
        "base_dir": "/upload",
        "host_key": s.sftp_host_key,
        "timeout_seconds": 3,
    }


def _smtp(s: Servers, port: int) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": "orders@shop.example",
        "timeout_seconds": 3,
    }


# key -> (success case, failure case, words the failure message must contain)
CASES: dict[str, tuple[Callable[[Servers], Case], Callable[[Servers], Case], str]] = {
    "http": (
        lambda s: Case({"base_url": s.http}, {}),
        lambda s: Case({"base_url": f"http://127.0.0.1:{s.closed_port}"}, {}),
        "could not connect",
    ),
    "poll_http": (
        lambda s: Case({"base_url": s.paged + "/stock"}, {}),
        lambda s: Case({"base_url": s.paged + "/nowhere"}, {}),
        "HTTP 404",
    ),
    "sql": (
        lambda s: Case({"dialect": "sqlite", "sqlite_path": s.sqlite_path}, {}),
        lambda s: Case({**PG, "username": "no_such_role_fg"}, {"password": "x"}),
        "no_such_role_fg",
    ),
    "poll_sql": (
        lambda s: Case({**PG, "username": "postgres"}, {}),
        lambda s: Case({**PG, "port": s.closed_port, "username": "postgres"}, {}),
        "connecting failed",
    ),
    "file": (
        lambda s: Case(_sftp(s), {"password": "sftp-pass"}),
        lambda s: Case(_sftp(s), {"password": "wrong-pass"}),
        "refused the login",
    ),
    "email": (
        lambda s: Case(_smtp(s, s.smtp_port), {}),
        lambda s: Case(_smtp(s, s.closed_port), {}),
        "connect",
    ),
    "amqp": (
        lambda s: Case(RABBIT, {"password": "guest"}),
        lambda s: Case(RABBIT, {"password": "not-the-password"}),
        "wrong username or password",
    ),
    "amqp_queue": (
        lambda s: Case(RABBIT, {"password": "guest"}),
        lambda s: Case({**RABBIT, "port": s.closed_port}, {"password": "guest"}),
        "connect",
    ),
    "redis_stream": (
        lambda s: Case(REDIS, {}),
        lambda s: Case({**REDIS, "port": s.closed_port}, {}),
        "connect",
    ),
    "redis_stream_group": (
        lambda s: Case(REDIS, {}),
        lambda s: Case({**REDIS, "port": s.closed_port}, {}),
        "connect",
    ),
    "webhook": (
        lambda s: Case({}, {"signing_secret": "whsec-test"}),
        lambda s: Case({}, {}),
        "no signing secret is stored",
    ),
}
# Triggers without a connection: nothing to connect to, so nothing can fail to connect.
# Their check runs on the trigger config instead (schedule: the cron and time zone).
NO_CONNECTION = {"schedule", "manual"}


def test_every_registered_connector_has_a_case(app):
    assert set(runtime.registry().keys()) == set(CASES) | NO_CONNECTION


def _test(client: Any, headers: dict[str, str], key: str, case: Case) -> dict[str, Any]:
    r = client.post(
        "/api/v1/connections",
        json={
            "name": f"{key} {len(case.secrets)} {sorted(case.config.items())!s:.40}",
            "connector": key,
            "config": case.config,
            "secrets": case.secrets,
        },
        headers=headers,
    )
    assert r.status_code == 201, r.get_json()
    r = client.post(f"/api/v1/connections/{r.get_json()['id']}/test", headers=headers)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


@pytest.mark.parametrize("key", sorted(CASES))
def test_check_succeeds_against_the_real_server(app, client, make_user, servers, key):
    _, headers = make_user("analyst")
    result = _test(client, headers, key, CASES[key][0](servers))
    assert result["ok"] is True, result
    assert result["message"]


@pytest.mark.parametrize("key", sorted(CASES))
def test_check_failure_says_why(app, client, make_user, servers, key):
    _, headers = make_user("analyst")
    _, failing, words = CASES[key]
    result = _test(client, headers, key, failing(servers))
    assert result["ok"] is False, result
    assert words.lower() in result["message"].lower(), result["message"]
    assert "Traceback" not in result["message"] and len(result["message"]) < 600


def _ctx(step: dict[str, Any]) -> ConnectorContext:
    import logging

    return ConnectorContext({}, {}, step, logging.getLogger("tests"), None)


def test_schedule_check_reads_the_trigger_config(app):
    schedule = runtime.registry().create("schedule")
    ok = schedule.check(_ctx({"cron": "0 6 * * 1-5", "timezone": "Europe/Berlin"}))
    assert ok.ok and "next tick" in ok.message and "Europe/Berlin" in ok.message
    bad = schedule.check(_ctx({"cron": "0 6 * *", "timezone": "Mars/Olympus"}))
    assert not bad.ok and "needs 5 fields" in bad.message
    assert runtime.registry().create("manual").check(_ctx({})).ok


def test_every_destination_declares_its_idempotency_in_the_catalogue(client, make_user):
    """What keeps a retried delivery from arriving twice, as reviewers and the editor see it."""
    _, headers = make_user("analyst")
    items = client.get("/api/v1/connectors", headers=headers).get_json()["items"]
    declared = {i["key"]: i["idempotency"] for i in items if i["kind"] == "destination"}
    assert declared == {
        "http": "key",  # Idempotency-Key header
        "sql": "upsert",  # natural-key upsert (insert mode relies on the table's unique keys)
        "file": "key",  # the file name carries the key; a retry rewrites the same file
        "amqp": "key",  # message_id = key, publisher confirms
        "redis_stream": "key",  # marker key checked atomically with XADD
        "email": "none",  # SMTP cannot dedupe; Message-ID is derived from the key
    }
