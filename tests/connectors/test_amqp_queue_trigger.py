"""AmqpQueueTrigger against the real RabbitMQ on 127.0.0.1:5672 (a throwaway queue per test)."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest

from connectors.amqp_queue import SPEC, AmqpQueueTrigger
from connectors.base import ConnectorContext, ConnectorError
from connectors.config import config_problems
from connectors.egress import EgressDenied, EgressPolicy
from tests.support.consumers import ThreadedConsumer, wait_for

LOOPBACK = EgressPolicy.from_cidrs(["127.0.0.0/8"])
RABBIT_PORT = 5672


class Queue:
    def __init__(self) -> None:
        self.connection = pika.BlockingConnection(
            pika.ConnectionParameters(
                "127.0.0.1", RABBIT_PORT, "/", pika.PlainCredentials("guest", "guest")
            )
        )
        self.channel = self.connection.channel()
        self.name = f"flowgate-test-trigger-{uuid.uuid4().hex}"
        self.channel.queue_declare(self.name)

    def publish(self, body: Any, message_id: str | None = None) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.channel.basic_publish("", self.name, raw, pika.BasicProperties(message_id=message_id))

    def counts(self) -> tuple[int, int]:
        """(ready messages, consumers)."""
        ok = self.channel.queue_declare(self.name, passive=True).method
        return ok.message_count, ok.consumer_count

    def close(self) -> None:
        self.channel.queue_delete(self.name)
        self.connection.close()


@pytest.fixture
def queue() -> Iterator[Queue]:
    q = Queue()
    yield q
    q.close()


def make_ctx(queue: str, egress: Any = LOOPBACK, **step: Any) -> ConnectorContext:
    return ConnectorContext(
        connection_config={
            "host": "127.0.0.1",
            "port": RABBIT_PORT,
            "username": "guest",
            "connect_timeout_seconds": 3,
        },
        secrets={"password": "guest"},
        step_config={"queue": queue, **step},
        logger=logging.getLogger("tests.amqp_queue"),
        http=None,
        egress=egress,
    )


def Consumer(  # noqa: N802 - reads like the class it builds
    ctx: ConnectorContext, fail: Callable[[Any], bool] | None = None
) -> ThreadedConsumer:
    return ThreadedConsumer(AmqpQueueTrigger(), ctx, fail)


def test_spec_reuses_the_amqp_connection_schema() -> None:
    from connectors.amqp import CONNECTION_SCHEMA

    assert SPEC.kind == "trigger" and SPEC.connection_schema is CONNECTION_SCHEMA
    assert SPEC.secret_fields == ("password",)
    assert config_problems(SPEC.step_schema, {"queue": "orders"}) == []
    assert config_problems(SPEC.step_schema, {})
    assert config_problems(SPEC.step_schema, {"queue": "q", "event_id": "body"})


def test_consumes_and_acks_after_handle(queue: Queue) -> None:
    queue.publish({"order_number": 1}, message_id="m-1")
    queue.publish({"order_number": 2})
    with Consumer(make_ctx(queue.name)) as consumer:
        wait_for(lambda: len(consumer.calls) == 2)
        wait_for(lambda: queue.counts() == (0, 1))
    assert consumer.calls == [({"order_number": 1}, "m-1"), ({"order_number": 2}, None)]
    assert consumer.error is None
    # Acked: nothing comes back once the consumer is gone.
    assert queue.counts() == (0, 0)


def test_event_id_none_ignores_message_id(queue: Queue) -> None:
    queue.publish({"a": 1}, message_id="m-1")
    with Consumer(make_ctx(queue.name, event_id="none")) as consumer:
        wait_for(lambda: len(consumer.calls) == 1)
    assert consumer.calls == [({"a": 1}, None)]


def test_failing_handle_requeues_and_the_message_is_redelivered(queue: Queue) -> None:
    attempts: list[int] = []

    def fail_first(message: Any) -> bool:
        attempts.append(1)
        return len(attempts) == 1

    queue.publish({"order_number": 7}, message_id="m-7")
    with Consumer(make_ctx(queue.name), fail=fail_first) as consumer:
        wait_for(lambda: len(consumer.calls) == 2)
        wait_for(lambda: queue.counts() == (0, 1))
    assert consumer.calls == [({"order_number": 7}, "m-7")] * 2
    assert queue.counts() == (0, 0)


def test_unacked_message_returns_when_stopped_mid_failure(queue: Queue) -> None:
    queue.publish({"n": 1}, message_id="m-1")
    with Consumer(make_ctx(queue.name), fail=lambda message: True) as consumer:
        wait_for(lambda: len(consumer.calls) >= 1)
    wait_for(lambda: queue.counts() == (1, 0))  # nacked with requeue: still there


def test_invalid_json_is_rejected_without_requeue(queue: Queue, caplog: Any) -> None:
    queue.publish(b"{not json", message_id="bad-1")
    queue.publish(b'{"n": NaN}', message_id="bad-2")
    queue.publish({"n": 1}, message_id="good")
    with caplog.at_level(logging.ERROR, "tests.amqp_queue"):
        with Consumer(make_ctx(queue.name)) as consumer:
            wait_for(lambda: len(consumer.calls) == 1)
            wait_for(lambda: queue.counts() == (0, 1))
    assert consumer.calls == [({"n": 1}, "good")]
    assert queue.counts() == (0, 0)
    rejected = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected) == 2 and "bad-1" in rejected[0]


def test_permanent_handler_error_rejects(queue: Queue) -> None:
    queue.publish({"n": 1}, message_id="m-1")
    calls: list[Any] = []

    def handle(message: Any, event_id: str | None) -> None:
        calls.append(message)
        raise ConnectorError("event id reused with another body")

    stop = threading.Event()
    thread = threading.Thread(
        target=AmqpQueueTrigger().consume, args=(make_ctx(queue.name), handle, stop)
    )
    thread.start()
    wait_for(lambda: len(calls) == 1)
    wait_for(lambda: queue.counts() == (0, 1))
    stop.set()
    thread.join(5)
    assert calls == [{"n": 1}] and queue.counts() == (0, 0)


def test_stop_event_ends_consume_promptly(queue: Queue) -> None:
    consumer = Consumer(make_ctx(queue.name)).__enter__()
    wait_for(lambda: queue.counts() == (0, 1))
    started = time.monotonic()
    consumer.stop.set()
    consumer.thread.join(5)
    assert not consumer.thread.is_alive()
    assert time.monotonic() - started < 2
    assert consumer.error is None


def test_missing_queue_is_a_permanent_error() -> None:
    with pytest.raises(ConnectorError, match="404"):
        AmqpQueueTrigger().consume(
            make_ctx(f"flowgate-missing-{uuid.uuid4().hex}"), lambda m, e: None, threading.Event()
        )


def test_wrong_password_is_a_permanent_error(queue: Queue) -> None:
    ctx = make_ctx(queue.name)
    ctx.secrets = {"password": "nope"}
    with pytest.raises(ConnectorError, match="refused the login"):
        AmqpQueueTrigger().consume(ctx, lambda m, e: None, threading.Event())


def test_egress_policy_is_enforced(queue: Queue) -> None:
    with pytest.raises(EgressDenied):
        AmqpQueueTrigger().consume(
            make_ctx(queue.name, egress=EgressPolicy()), lambda m, e: None, threading.Event()
        )


def test_accept_is_refused() -> None:
    with pytest.raises(ConnectorError):
        AmqpQueueTrigger().accept(make_ctx("q"), None)  # type: ignore[arg-type]
