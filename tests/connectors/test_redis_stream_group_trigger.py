"""RedisStreamGroupTrigger against the real Redis (db 4 by default; unique stream names)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
import redis

from connectors.base import ConnectorContext, ConnectorError
from connectors.egress import EgressDenied, EgressPolicy
from connectors.redis_stream_group import SPEC, RedisStreamGroupTrigger
from tests.support.consumers import ThreadedConsumer, wait_for

LOOPBACK = EgressPolicy.from_cidrs(["127.0.0.0/8"])
URL = urlparse(os.environ.get("FLOWGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/4"))
if URL.scheme != "redis":
    pytest.skip("needs a TCP Redis (FLOWGATE_TEST_REDIS_URL)", allow_module_level=True)
HOST, PORT, DB = URL.hostname or "127.0.0.1", URL.port or 6379, int(URL.path.strip("/") or 0)
GROUP = "flowgate"


@pytest.fixture
def stream() -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis(HOST, PORT, DB)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("Redis not reachable")
    name = f"flowgate-test-group-{uuid.uuid4().hex}"
    yield client, name
    client.delete(name)
    client.close()


def make_ctx(stream: str, egress: Any = LOOPBACK, **step: Any) -> ConnectorContext:
    return ConnectorContext(
        connection_config={"host": HOST, "port": PORT, "db": DB, "timeout_seconds": 3},
        secrets={},
        step_config={"stream": stream, "group": GROUP, "consumer": "c1", **step},
        logger=logging.getLogger("tests.redis_stream_group"),
        http=None,
        egress=egress,
    )


def Consumer(  # noqa: N802 - reads like the class it builds
    ctx: ConnectorContext, fail: Callable[[Any], bool] | None = None
) -> ThreadedConsumer:
    return ThreadedConsumer(RedisStreamGroupTrigger(), ctx, fail)


def pending(client: redis.Redis, name: str) -> int:
    return int(client.xpending(name, GROUP)["pending"])


def add(client: redis.Redis, name: str, message: Any, **fields: Any) -> str:
    raw = message if isinstance(message, bytes) else json.dumps(message)
    return client.xadd(name, {"payload": raw, **fields}).decode()


def test_spec() -> None:
    from connectors.redis_stream import CONNECTION_SCHEMA

    assert SPEC.kind == "trigger" and SPEC.connection_schema is CONNECTION_SCHEMA


def test_creates_the_group_reads_and_acks(stream: tuple[redis.Redis, str]) -> None:
    client, name = stream
    with Consumer(make_ctx(name, start="all")) as consumer:
        wait_for(lambda: client.exists(name) == 1)  # MKSTREAM
        first = add(client, name, {"n": 1})
        second = add(client, name, {"n": 2}, idempotency_key="k-2")
        wait_for(lambda: len(consumer.calls) == 2)
        wait_for(lambda: pending(client, name) == 0)
    assert consumer.calls == [({"n": 1}, f"{name}:{first}"), ({"n": 2}, f"{name}:{second}")]
    assert consumer.error is None


def test_idempotency_key_event_id(stream: tuple[redis.Redis, str]) -> None:
    client, name = stream
    add(client, name, {"n": 1}, idempotency_key="k-1")
    with Consumer(make_ctx(name, start="all", event_id="idempotency_key")) as consumer:
        wait_for(lambda: len(consumer.calls) == 1)
    assert consumer.calls == [({"n": 1}, "k-1")]


def test_failing_handle_leaves_the_entry_pending_and_retries(
    stream: tuple[redis.Redis, str],
) -> None:
    client, name = stream
    attempts: list[int] = []

    def fail_first(message: Any) -> bool:
        attempts.append(1)
        return len(attempts) == 1

    entry = add(client, name, {"n": 7})
    with Consumer(make_ctx(name, start="all"), fail=fail_first) as consumer:
        wait_for(lambda: len(consumer.calls) == 2)
        wait_for(lambda: pending(client, name) == 0)
    assert consumer.calls == [({"n": 7}, f"{name}:{entry}")] * 2


def test_crashed_consumers_entries_are_claimed(stream: tuple[redis.Redis, str]) -> None:
    client, name = stream
    client.xgroup_create(name, GROUP, id="0", mkstream=True)
    entry = add(client, name, {"n": 1})
    client.xreadgroup(GROUP, "dead-consumer", {name: ">"})  # read, never acked
    time.sleep(1.1)
    with Consumer(make_ctx(name, claim_idle_seconds=1)) as consumer:
        wait_for(lambda: len(consumer.calls) == 1)
        wait_for(lambda: pending(client, name) == 0)
    assert consumer.calls == [({"n": 1}, f"{name}:{entry}")]


def test_invalid_entries_are_acked_and_skipped(stream: tuple[redis.Redis, str]) -> None:
    client, name = stream
    add(client, name, b"{nope")
    client.xadd(name, {"other": "x"})
    add(client, name, {"n": 1})
    with Consumer(make_ctx(name, start="all")) as consumer:
        wait_for(lambda: len(consumer.calls) == 1)
        wait_for(lambda: pending(client, name) == 0)
    assert consumer.calls[0][0] == {"n": 1}


def test_permanent_handler_error_acks(stream: tuple[redis.Redis, str]) -> None:
    client, name = stream
    add(client, name, {"n": 1})
    calls: list[Any] = []

    def handle(message: Any, event_id: str | None) -> None:
        calls.append(message)
        raise ConnectorError("event id reused with another body")

    stop = threading.Event()
    ctx = make_ctx(name, start="all")
    thread = threading.Thread(target=RedisStreamGroupTrigger().consume, args=(ctx, handle, stop))
    thread.start()
    wait_for(lambda: len(calls) == 1)
    wait_for(lambda: pending(client, name) == 0)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()


def test_stop_event_ends_consume_promptly(stream: tuple[redis.Redis, str]) -> None:
    client, name = stream
    consumer = Consumer(make_ctx(name)).__enter__()
    wait_for(lambda: client.exists(name) == 1)
    started = time.monotonic()
    consumer.stop.set()
    consumer.thread.join(5)
    assert not consumer.thread.is_alive() and time.monotonic() - started < 2
    assert consumer.error is None


def test_egress_policy_is_enforced(stream: tuple[redis.Redis, str]) -> None:
    _, name = stream
    with pytest.raises(EgressDenied):
        RedisStreamGroupTrigger().consume(
            make_ctx(name, egress=EgressPolicy()), lambda m, e: None, threading.Event()
        )


def test_wrong_type_key_is_a_permanent_error(stream: tuple[redis.Redis, str]) -> None:
    client, name = stream
    client.set(name, "not a stream")
    with pytest.raises(ConnectorError):
        RedisStreamGroupTrigger().consume(make_ctx(name), lambda m, e: None, threading.Event())
