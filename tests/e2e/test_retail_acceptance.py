"""Issue #6 acceptance, end to end with REAL processes (web: gunicorn, RQ worker, scheduler)
on SQLite and PostgreSQL ledgers, against real systems on 127.0.0.1:

(A) "stock update -> WMS": a poll of a paginated HTTP stock API every minute upserts into a
    PostgreSQL table; a changed item updates its row, nothing is written twice.
(B) "web order -> ERP + finance": one signed Shopify-style webhook fans out to an HTTP ERP (the
    sink), a CSV file over SFTP and a RabbitMQ exchange, each receiving exactly one effect
    (also when the shop retries the webhook); a tampered signature gets 401; a destination URL
    of http://169.254.169.254/ is refused when the connection is saved.

The flows are the fixtures in tests/fixtures/flows/valid/ with this test's connection ids.
They are saved as drafts through the API (full validation) and then set live in the database:
the review gate has its own tests. The scheduler's clock runs 12x faster (FLOWGATE_CLOCK_SCALE),
so the flow's 60-second interval passes in 5 real seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import psycopg
import pytest
from sqlalchemy import select, update

from app.extensions import db
from app.models import Delivery, FlowVersion, Run, VersionStatus
from app.models._types import utcnow
from tests.support.paged_api import PagedApi
from tests.support.processes import Processes, clean_env, free_port, http, wait_for, wait_http
from tests.support.sftp_server import SFTPTestServer

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "flows" / "valid"
ORDER = json.loads(
    (
        Path(__file__).resolve().parents[2] / "app" / "demo" / "commerce-order-created.json"
    ).read_text()
)
PG = {"dialect": "postgresql", "host": "127.0.0.1", "port": 5432, "database": "test"}
SHOP_SECRET = "shpss_acceptance_signing_secret"
FINAL = {"succeeded", "dead_lettered", "filtered", "rejected"}


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(tmp_path / "logs")
    try:
        yield processes
    finally:
        processes.stop_all()
        print(processes.logs())


@pytest.fixture
def stack_env(app: Any, database_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return clean_env(
        FLOWGATE_DATABASE_URL=database_url,
        FLOWGATE_REDIS_URL=redis_url,
        FLOWGATE_INSTANCE_PATH=str(tmp_path / "instance"),
        FLOWGATE_SECRET_KEY=app.config["SECRET_KEY"],
        FLOWGATE_DEMO="0",
        FLOWGATE_EGRESS_ALLOW="127.0.0.0/8",
        FLOWGATE_QUEUE_NAME=f"e2e-{uuid.uuid4().hex[:10]}",
        FLOWGATE_SWEEP_INTERVAL_SECONDS="1",
        FLOWGATE_CLOCK_SCALE="12",
        FLOWGATE_CLOCK_EPOCH=str(time.time()),
        FLOWGATE_LOG_LEVEL="INFO",
        FLOWGATE_LOG_FORMAT="text",
    )


def _connection(
    client: Any, headers: dict[str, str], connector: str, config: dict, secrets: dict
) -> int:
    r = client.post(
        "/api/v1/connections",
        json={
            "name": f"{connector}-{uuid.uuid4().hex[:6]}",
            "connector": connector,
            "config": config,
            "secrets": secrets,
        },
        headers=headers,
    )
    assert r.status_code == 201, r.get_json()
    return int(r.get_json()["id"])


def _go_live(client: Any, headers: dict[str, str], name: str, doc: dict[str, Any]) -> dict:
    r = client.post("/api/v1/flows", json={"name": name}, headers=headers)
    assert r.status_code == 201, r.get_json()
    flow = r.get_json()
    r = client.put(f"/api/v1/flows/{flow['id']}/draft", json={"definition": doc}, headers=headers)
    assert r.status_code == 200 and r.get_json()["problems"] == [], r.get_json()
    db.session.execute(
        update(FlowVersion)
        .where(FlowVersion.flow_id == flow["id"])
        .values(status=VersionStatus.LIVE.value, live_since=utcnow())
    )
    db.session.commit()
    return flow


def _runs(flow_id: int) -> dict[str, list[int]]:
    try:
        rows = db.session.execute(
            select(Run.id, Run.status).where(Run.flow_id == flow_id).order_by(Run.id)
        ).all()
    finally:
        db.session.rollback()
    grouped: dict[str, list[int]] = {}
    for run_id, status in rows:
        grouped.setdefault(status, []).append(run_id)
    return grouped


def _wait_final(flow_id: int, expected: int, procs: Processes, timeout: float = 90) -> None:
    def done() -> bool:
        procs.check_alive()
        runs = _runs(flow_id)
        final = sum(len(ids) for status, ids in runs.items() if status in FINAL)
        return final >= expected and sum(len(ids) for ids in runs.values()) == final

    wait_for(
        done,
        timeout=timeout,
        interval=0.3,
        what=f"{expected} runs of flow {flow_id} to finish",
        on_timeout=lambda: f"runs: {_runs(flow_id)}\n{procs.logs()}",
    )


# --------------------------------------------------------------------------- (A)


@pytest.fixture
def wms_table() -> Iterator[tuple[str, Any]]:
    try:
        conn = psycopg.connect(host="127.0.0.1", user="postgres", dbname="test", autocommit=True)
    except psycopg.OperationalError:
        pytest.skip("PostgreSQL not reachable")
    name = f"wms_stock_{uuid.uuid4().hex[:8]}"
    conn.execute(
        f"CREATE TABLE {name} (sku TEXT PRIMARY KEY, quantity INTEGER NOT NULL, "
        "warehouse TEXT NOT NULL, source_version INTEGER NOT NULL)"
    )
    yield name, conn
    conn.execute(f"DROP TABLE {name}")
    conn.close()


def test_stock_update_polls_every_minute_and_upserts_into_the_wms(
    app, client, make_user, procs, stack_env, wms_table
):
    table, wms = wms_table
    _, analyst = make_user("analyst")
    api = PagedApi().start()
    try:
        api.add(*({"sku": f"SKU-{n:03d}", "qty": n * 10, "version": 1} for n in range(1, 8)))
        doc = json.loads((FIXTURES / "stock_update_to_wms.json").read_text())
        doc["trigger"]["connection_id"] = _connection(
            client, analyst, "poll_http", {"base_url": api.url}, {}
        )
        doc["trigger"]["config"]["page_size"] = 3  # 7 items: three pages
        doc["steps"][1]["connection_id"] = _connection(
            client, analyst, "sql", {**PG, "username": "postgres"}, {}
        )
        doc["steps"][1]["config"]["table"] = table
        flow = _go_live(client, analyst, "Stock update to WMS", doc)

        procs.worker(stack_env)
        procs.scheduler(stack_env)
        _wait_final(flow["id"], 7, procs)
        rows = dict(wms.execute(f"SELECT sku, quantity FROM {table}").fetchall())
        assert rows == {f"SKU-{n:03d}": n * 10 for n in range(1, 8)}
        first_poll_requests = len(api.requests)
        assert [r["query"].get("cursor") for r in api.requests[:3]] == [None, "3", "6"]

        # The shop changes a stock level and lists a new SKU: the next minute's poll picks
        # up exactly those two.
        api.add({"sku": "SKU-002", "qty": 999, "version": 2})
        api.add({"sku": "SKU-008", "qty": 80, "version": 1})
        _wait_final(flow["id"], 9, procs)
        rows = dict(wms.execute(f"SELECT sku, quantity FROM {table}").fetchall())
        assert len(rows) == 8 and rows["SKU-002"] == 999 and rows["SKU-008"] == 80
        assert len(api.requests) > first_poll_requests

        runs = _runs(flow["id"])
        assert runs == {"succeeded": runs["succeeded"]} and len(runs["succeeded"]) == 9
        deliveries = db.session.execute(
            select(Delivery.status, Delivery.attempts).join(Run).where(Run.flow_id == flow["id"])
        ).all()
        db.session.rollback()
        assert len(deliveries) == 9 and {d.status for d in deliveries} == {"acknowledged"}

        # Polls keep coming every (scheduler) minute, and nothing is written twice.
        polls_before = len(api.requests)
        wait_for(lambda: len(api.requests) > polls_before + 1, timeout=30, what="two more polls")
        assert sum(len(ids) for ids in _runs(flow["id"]).values()) == 9
    finally:
        api.stop()


# --------------------------------------------------------------------------- (B)


@pytest.fixture
def exchange() -> Iterator[tuple[str, Any, str]]:
    credentials = pika.PlainCredentials("guest", "guest")
    try:
        connection = pika.BlockingConnection(
            pika.ConnectionParameters("127.0.0.1", 5672, "/", credentials, socket_timeout=5)
        )
    except pika.exceptions.AMQPError:
        pytest.skip("RabbitMQ not reachable")
    channel = connection.channel()
    name = f"retail.orders.{uuid.uuid4().hex[:8]}"
    channel.exchange_declare(name, "topic")
    channel.queue_declare(name, exclusive=True)
    channel.queue_bind(name, name, routing_key="order.*")
    yield name, channel, name
    channel.exchange_delete(name)
    connection.close()


def _signed(body: bytes, secret: str = SHOP_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def test_web_order_fans_out_to_erp_sftp_and_rabbitmq_once_each(
    app, client, make_user, procs, stack_env, sink, exchange, tmp_path
):
    exchange_name, channel, queue = exchange
    _, analyst = make_user("analyst")
    root = tmp_path / "sftp"
    (root / "upload").mkdir(parents=True)
    sftp = SFTPTestServer(root, password="finance-pass").start()
    try:
        # A destination pointing at the cloud metadata address is refused when saved.
        r = client.post(
            "/api/v1/connections",
            json={
                "name": "Sneaky ERP",
                "connector": "http",
                "config": {"base_url": "http://169.254.169.254/"},
            },
            headers=analyst,
        )
        assert r.status_code == 422, r.get_json()
        assert "egress" in json.dumps(r.get_json()).lower()

        doc = json.loads((FIXTURES / "web_order_to_erp_and_finance.json").read_text())
        ids = {
            "trigger": _connection(client, analyst, "webhook", {}, {"signing_secret": SHOP_SECRET}),
            "send_erp": _connection(client, analyst, "http", {"base_url": sink.url}, {}),
            "finance_csv": _connection(
                client,
                analyst,
                "file",
                {
                    "transport": "sftp",
                    "host": "127.0.0.1",
                    "port": sftp.port,
                    "username": "flowgate",
                    "base_dir": "/upload",
                    "host_key": sftp.host_key_line,
                    "timeout_seconds": 5,
                },
                {"password": "finance-pass"},
            ),
            "publish_order": _connection(
                client,
                analyst,
                "amqp",
                {"host": "127.0.0.1", "port": 5672, "username": "guest"},
                {"password": "guest"},
            ),
        }
        doc["trigger"]["connection_id"] = ids["trigger"]
        for step in doc["steps"]:
            if step["id"] in ids:
                step["connection_id"] = ids[step["id"]]
            if step["id"] == "publish_order":
                step["config"]["exchange"] = exchange_name
        flow = _go_live(client, analyst, "Web order to ERP and finance", doc)

        port = free_port()
        procs.web(stack_env, port, workers=1)
        procs.worker(stack_env)
        procs.scheduler(stack_env)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", timeout=60, procs=procs)
        hook = f"{base}/hooks/{flow['slug']}"
        body = json.dumps(ORDER).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Hmac-Sha256": _signed(body),
            "X-Shopify-Webhook-Id": "wh-1001",
        }

        tampered = body.replace(b'"315.45"', b'"0.01"')
        assert tampered != body
        status, _, raw = http("POST", hook, body=tampered, headers=headers)
        assert status == 401, raw
        status, _, raw = http("POST", hook, body=body, headers=headers)
        assert status == 202, raw
        # The shop did not see our answer and sends the same webhook again.
        status, _, raw = http("POST", hook, body=body, headers=headers)
        assert status in (200, 202), raw
        _wait_final(flow["id"], 1, procs)

        runs = _runs(flow["id"])
        assert list(runs) == ["succeeded"] and len(runs["succeeded"]) == 1, runs
        # ERP: one request, one effect.
        erp = [r for r in sink.requests if r.path == "/sales-orders"]
        assert len(erp) == 1 and erp[0].json()["orderRef"] == "WEB-1001"
        assert set(sink.effects().values()) == {1}
        # Finance: one CSV file on the SFTP server.
        files = list((root / "upload" / "finance").glob("*.csv"))
        assert len(files) == 1, files
        lines = files[0].read_text().splitlines()
        assert lines[0] == "order,currency,total" and lines[1:] == ["1001,GBP,315.45"]
        # RabbitMQ: one message on the exchange.
        messages = []
        for _ in range(5):
            method, properties, payload = channel.basic_get(queue, auto_ack=True)
            if method is None:
                break
            messages.append((properties.message_id, json.loads(payload)))
        assert len(messages) == 1, messages
        assert messages[0][1]["order_number"] == 1001
        # No delivery needed a second attempt, and none is left pending.
        deliveries = db.session.execute(
            select(Delivery.step_id, Delivery.status, Delivery.attempts)
            .join(Run)
            .where(Run.flow_id == flow["id"])
        ).all()
        db.session.rollback()
        assert sorted((d.step_id, d.status) for d in deliveries) == [
            ("finance_csv", "acknowledged"),
            ("publish_order", "acknowledged"),
            ("send_erp", "acknowledged"),
        ]
    finally:
        sftp.stop()
