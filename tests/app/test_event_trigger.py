"""Event triggers end to end: RabbitMQ queue → consumer → record_run → worker → sink."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest
import redis
from sqlalchemy import func, select

from app.consumer import Supervisor, serve, subscriptions
from app.extensions import db
from app.models import Run
from app.queues import run_queue
from tests.app.test_walking_skeleton import MAPPING, ORDER
from tests.conftest import SECRET
from tests.support.contracts import complete_contract


class Queue:
    def __init__(self) -> None:
        self.connection = pika.BlockingConnection(
            pika.ConnectionParameters(
                "127.0.0.1", 5672, "/", pika.PlainCredentials("guest", "guest")
            )
        )
        self.channel = self.connection.channel()
        self.name = f"flowgate-test-event-{uuid.uuid4().hex}"
        self.channel.queue_declare(self.name)

    def publish(self, body: Any, message_id: str | None = None) -> None:
        self.channel.basic_publish(
            "", self.name, json.dumps(body).encode(), pika.BasicProperties(message_id=message_id)
        )

    def counts(self) -> tuple[int, int]:
        ok = self.channel.queue_declare(self.name, passive=True).method
        return ok.message_count, ok.consumer_count


@pytest.fixture
def queue() -> Iterator[Queue]:
    q = Queue()
    yield q
    q.channel.queue_delete(q.name)
    q.connection.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def run_count() -> int:
    try:
        return db.session.execute(select(func.count(Run.id))).scalar_one()
    finally:
        db.session.rollback()  # hold no read transaction while the consumer writes


def live_event_flow(
    client: Any, make_user: Any, sink: Any, queue: str, trigger: dict[str, Any] | None = None
) -> int:
    analyst, analyst_h = make_user("analyst")
    owner, owner_h = make_user("owner")
    connections = {}
    for name, body in {
        "oms": {
            "name": "OMS",
            "connector": "http",
            "config": {"base_url": sink.url},
        },
        "source": {
            "name": "Source",
            "connector": "amqp_queue",
            "config": {"host": "127.0.0.1", "port": 5672, "username": "guest"},
            "secrets": {"password": "guest"},
        }
        if trigger is None
        else trigger.pop("connection"),
    }.items():
        r = client.post("/api/v1/connections", json=body, headers=analyst_h)
        assert r.status_code == 201, r.get_json()
        connections[name] = r.get_json()["id"]
    definition = {
        "schema_version": 1,
        "trigger": {
            "type": "amqp_queue",
            "connection_id": connections["source"],
            "config": {"queue": queue, "business_key": "$string(order_number)"},
        }
        if trigger is None
        else {**trigger, "connection_id": connections["source"]},
        "steps": [
            {"id": "to_oms_order", "type": "map", "expression": MAPPING},
            {
                "id": "send_oms",
                "type": "deliver",
                "connector": "http",
                "connection_id": connections["oms"],
                "config": {"method": "POST", "path": "/orders"},
            },
        ],
        "edges": [
            {"from": "trigger", "to": "to_oms_order"},
            {"from": "to_oms_order", "to": "send_oms"},
        ],
    }
    r = client.post("/api/v1/flows", json={"name": "Queued orders"}, headers=analyst_h)
    assert r.status_code == 201
    flow_id = r.get_json()["id"]
    r = client.put(
        f"/api/v1/flows/{flow_id}/draft", json={"definition": definition}, headers=analyst_h
    )
    assert r.status_code == 200, r.get_json()
    base = f"/api/v1/flows/{flow_id}/versions/{r.get_json()['version']}"
    assert (
        client.post(
            f"{base}/submit", json={"contract": complete_contract()}, headers=analyst_h
        ).status_code
        == 200
    )
    r = client.post(f"{base}/approve", json={"comment": "ok"}, headers=owner_h)
    assert r.status_code == 200, r.get_json()
    db.session.rollback()
    return flow_id


def test_queue_message_becomes_one_run_and_redelivery_dedupes(
    app, client, make_user, sink, run_worker, queue
):
    flow_id = live_event_flow(client, make_user, sink, queue.name)
    assert list(subscriptions(app)) == [flow_id]
    queue.publish(ORDER, message_id="order-1001")
    queue.publish(ORDER, message_id="order-1001")  # a redelivery / publisher retry

    stop = threading.Event()
    errors: list[BaseException] = []

    def child() -> None:
        try:
            serve(app, flow_id, stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=child, daemon=True)
    thread.start()
    try:
        wait_for(lambda: queue.counts() == (0, 1) and run_count() == 1)
        time.sleep(0.5)  # a second run would show up now
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive() and errors == []
    assert run_count() == 1
    assert queue.counts() == (0, 0)  # both deliveries acked

    run_worker()
    assert len(sink.requests) == 1
    assert sink.requests[0].json()["orderRef"] == "WEB-1001"
    run = db.session.execute(select(Run)).scalar_one()
    assert run.trigger_kind == "event"
    assert run.idempotency_key == "order-1001"
    assert run.business_key == "1001"
    assert run.status == "succeeded"


def test_consumer_without_live_flow_serves_nothing(app) -> None:
    assert subscriptions(app) == {}


@pytest.mark.slow
def test_supervisor_runs_a_child_process_per_subscription(
    app, client, make_user, sink, run_worker, queue, monkeypatch, tmp_path
):
    flow_id = live_event_flow(client, make_user, sink, queue.name)
    monkeypatch.setenv("FLOWGATE_DATABASE_URL", app.config["SQLALCHEMY_DATABASE_URI"])
    monkeypatch.setenv("FLOWGATE_REDIS_URL", app.config["FLOWGATE_REDIS_URL"])
    monkeypatch.setenv("FLOWGATE_SECRET_KEY", SECRET)
    monkeypatch.setenv("FLOWGATE_EGRESS_ALLOW", "127.0.0.0/8")
    monkeypatch.setenv("FLOWGATE_DEMO", "0")
    monkeypatch.setenv("FLOWGATE_QUEUE_NAME", app.config["FLOWGATE_QUEUE_NAME"])
    monkeypatch.setenv("FLOWGATE_INSTANCE_PATH", str(tmp_path))
    app.config["FLOWGATE_CONSUMER_RECONCILE_SECONDS"] = 1

    supervisor = Supervisor(app, grace_seconds=10)
    stop = threading.Event()
    thread = threading.Thread(target=supervisor.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: queue.counts()[1] == 1, timeout=30)  # the child is consuming
        first = supervisor.children[flow_id].process
        assert first is not None
        queue.publish(ORDER, message_id="order-1001")
        # Committed and enqueued (a kill between the two is the sweep's job, not tested here).
        wait_for(lambda: run_count() == 1 and run_queue(app).count == 1)

        first.kill()  # a crashed child is restarted
        wait_for(
            lambda: supervisor.children[flow_id].process is not first and queue.counts()[1] == 1,
            timeout=30,
        )
        queue.publish(ORDER, message_id="order-1001")  # redelivered: deduplicated
        queue.publish({**ORDER, "order_number": 1002}, message_id="order-1002")
        wait_for(lambda: queue.counts() == (0, 1) and run_count() == 2)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert supervisor.children == {}
    assert queue.counts() == (0, 0)
    run_worker()
    assert sorted(r.json()["orderRef"] for r in sink.requests) == ["WEB-1001", "WEB-1002"]


def consumed(client: redis.Redis, stream: str) -> int:
    """Entries the group has read and acknowledged."""
    groups = client.xinfo_groups(stream)
    if not groups or int(groups[0]["pending"]):
        return -1
    return int(groups[0]["entries-read"] or 0)


def test_redis_stream_entry_becomes_one_run(app, client, make_user, sink, run_worker):
    from urllib.parse import urlparse

    url = urlparse(app.config["FLOWGATE_REDIS_URL"])
    if url.scheme != "redis":
        pytest.skip("needs a TCP Redis")
    stream = f"flowgate-test-event-{uuid.uuid4().hex}"
    db_number = int(url.path.strip("/") or 0)
    trigger = {
        "type": "redis_stream_group",
        "connection": {
            "name": "Stream",
            "connector": "redis_stream_group",
            "config": {"host": url.hostname, "port": url.port or 6379, "db": db_number},
        },
        "config": {
            "stream": stream,
            "group": "flowgate",
            "start": "all",
            "event_id": "idempotency_key",
            "business_key": "$string(order_number)",
        },
    }
    flow_id = live_event_flow(client, make_user, sink, "", trigger)
    other = redis.Redis(url.hostname, url.port or 6379, db_number)
    try:
        for _ in range(2):  # a producer retry: the same idempotency key twice
            other.xadd(stream, {"payload": json.dumps(ORDER), "idempotency_key": "order-1001"})
        stop = threading.Event()
        thread = threading.Thread(target=serve, args=(app, flow_id, stop), daemon=True)
        thread.start()
        try:
            wait_for(lambda: consumed(other, stream) == 2)
        finally:
            stop.set()
            thread.join(10)
        assert not thread.is_alive()
        assert run_count() == 1
        run_worker()
        assert [r.json()["orderRef"] for r in sink.requests] == ["WEB-1001"]
    finally:
        other.delete(stream)
        other.close()


def test_supervisor_reconciles_children_without_a_database() -> None:
    import sys

    from flask import Flask

    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    supervisor = Supervisor(Flask("t"), command=lambda flow_id: sleeper, grace_seconds=5)
    try:
        supervisor.reconcile({1: 10, 2: 20})  # two subscriptions: two children
        first = {f: c.process for f, c in supervisor.children.items()}
        assert set(first) == {1, 2} and all(p.poll() is None for p in first.values())

        supervisor.reconcile({1: 11, 2: 20})  # flow 1 has a new live version: restarted
        assert first[1].poll() is not None
        assert supervisor.children[1].process is not first[1]
        assert supervisor.children[2].process is first[2]

        supervisor.children[2].process.kill()  # a dead child is restarted after a backoff
        supervisor.children[2].process.wait()
        supervisor.reconcile({1: 11, 2: 20})
        assert supervisor.children[2].restart_at > 0
        supervisor.children[2].restart_at = time.monotonic()  # skip the 1 s wait
        supervisor.reconcile({1: 11, 2: 20})
        assert supervisor.children[2].process.poll() is None
        assert supervisor.children[2].failures == 1

        kept = supervisor.children[2].process
        supervisor.reconcile({2: 20})  # flow 1 retired: its child stops
        assert set(supervisor.children) == {2} and supervisor.children[2].process is kept
    finally:
        supervisor._stop(list(supervisor.children.values()))
    assert all(c.process.poll() is not None for c in supervisor.children.values())
