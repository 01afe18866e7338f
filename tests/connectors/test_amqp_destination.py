"""AmqpDestination against the real RabbitMQ on 127.0.0.1:5672 (throwaway exchange + queue)."""

from __future__ import annotations

import json
import logging
import select
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pika
import pytest

from connectors import amqp
from connectors.amqp import SPEC, AmqpDestination
from connectors.base import ConnectorContext, ConnectorError, RetryableConnectorError
from connectors.config import config_problems
from connectors.egress import EgressDenied, EgressPolicy
from tests.support.tls_probe import TlsProbe

if TYPE_CHECKING:
    from conftest import FakeDNS

LOOPBACK = EgressPolicy.from_cidrs(["127.0.0.0/8"])
RABBIT_PORT = 5672
KEY = "run-41:dest-7"
ROUTING_KEY = "orders.created"
CANARY = "pw-CANARY-5e4d3c2b"


@dataclass
class Broker:
    """A uniquely named direct exchange with one queue bound for ROUTING_KEY."""

    channel: Any
    exchange: str
    queue: str

    def get(self, queue: str | None = None) -> tuple[Any, Any, bytes] | None:
        method, properties, body = self.channel.basic_get(queue or self.queue, auto_ack=True)
        return None if method is None else (method, properties, body)


@pytest.fixture
def broker() -> Iterator[Broker]:
    credentials = pika.PlainCredentials("guest", "guest")
    connection = pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", RABBIT_PORT, "/", credentials, socket_timeout=5)
    )
    channel = connection.channel()
    name = f"flowgate-test-{uuid.uuid4().hex}"
    channel.exchange_declare(name, "direct")
    channel.queue_declare(name, exclusive=True)  # gone with the admin connection
    channel.queue_bind(name, name, routing_key=ROUTING_KEY)
    yield Broker(channel, name, name)
    amqp.close_cached_connections()
    channel.exchange_delete(name)
    connection.close()


def make_ctx(
    connection: dict[str, Any] | None = None,
    step: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    egress: Any = LOOPBACK,
) -> ConnectorContext:
    return ConnectorContext(
        connection_config={
            "host": "127.0.0.1",
            "port": RABBIT_PORT,
            "username": "guest",
            "connect_timeout_seconds": 3,
            **(connection or {}),
        },
        secrets={"password": "guest"} if secrets is None else secrets,
        step_config=step or {},
        logger=logging.getLogger("tests.connectors.amqp"),
        http=None,
        egress=egress,
    )


def send(ctx: ConnectorContext, message: Any = None, key: str = KEY) -> Any:
    return AmqpDestination().send(ctx, message or {"order": 1}, idempotency_key=key)


def error_texts(exc: BaseException) -> str:
    """Everything an exception chain could show: messages, reprs, excerpts."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 50:
        parts += [str(current), repr(current), getattr(current, "response_excerpt", "")]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def rabbit_connects(connect_log: list[Any], port: int = RABBIT_PORT) -> list[Any]:
    return [address for address in connect_log if address[1] == port]


def test_publishes_persistent_json_with_message_id_and_headers(broker: Broker) -> None:
    message = {"customer": "Zoë Ünlü", "total": 12.5, "items": [{"sku": "€-1"}]}
    step = {
        "exchange": broker.exchange,
        "routing_key": ROUTING_KEY,
        "headers": {"x-source": "webshop", "tenant": "eu-1"},
    }

    result = send(make_ctx(step=step), message)

    got = broker.get()
    assert got is not None
    method, properties, body = got
    assert json.loads(body) == message and body == json.dumps(message, ensure_ascii=False).encode()
    assert properties.content_type == "application/json"
    assert properties.delivery_mode == 2
    assert properties.message_id == KEY
    assert properties.headers == {"x-source": "webshop", "tenant": "eu-1"}
    assert (method.exchange, method.routing_key) == (broker.exchange, ROUTING_KEY)
    assert result.status_code is None
    assert result.response_excerpt.startswith("confirmed by RabbitMQ 3.")
    assert broker.get() is None  # exactly one message


def test_default_exchange_routes_to_the_queue_named_by_the_routing_key(broker: Broker) -> None:
    send(make_ctx(step={"exchange": "", "routing_key": broker.queue}))
    got = broker.get()
    assert got is not None and got[1].message_id == KEY and got[0].exchange == ""


def test_unroutable_message_is_a_permanent_error_and_the_connection_stays(
    broker: Broker, connect_log: list[Any]
) -> None:
    ctx = make_ctx(step={"exchange": broker.exchange, "routing_key": "no.such.binding"})

    with pytest.raises(ConnectorError) as caught:
        send(ctx)
    routed = make_ctx(step={"exchange": broker.exchange, "routing_key": ROUTING_KEY})
    send(routed, key="after-return")

    assert not caught.value.retryable
    assert caught.value.message == (
        "the broker returned the message as unroutable (312 NO_ROUTE): no queue is bound to "
        f"exchange {broker.exchange!r} with routing key 'no.such.binding'; bind a queue or "
        "turn off 'Fail if unroutable'"
    )
    got = broker.get()
    assert got is not None and got[1].message_id == "after-return"
    assert len(rabbit_connects(connect_log)) == 2  # the admin fixture's and ours, reused


def test_unroutable_without_mandatory_is_dropped_by_the_broker(broker: Broker) -> None:
    step = {"exchange": broker.exchange, "routing_key": "nowhere", "mandatory": False}
    assert send(make_ctx(step=step)).response_excerpt.startswith("confirmed by")
    assert broker.get() is None


def test_a_nack_is_retryable_and_the_connection_stays(
    broker: Broker, connect_log: list[Any]
) -> None:
    # A full queue with overflow "reject-publish" makes RabbitMQ nack further publishes.
    full = f"{broker.queue}-full"
    broker.channel.queue_declare(
        full, exclusive=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
    )
    broker.channel.queue_bind(full, broker.exchange, routing_key="full")
    ctx = make_ctx(step={"exchange": broker.exchange, "routing_key": "full"})
    send(ctx, key="fits")

    with pytest.raises(RetryableConnectorError) as caught:
        send(ctx, key="rejected")
    broker.get(full)  # the consumer catches up: the retry goes through on the same link
    send(ctx, key="rejected")

    assert caught.value.message == (
        f"the broker nacked the message sent to exchange {broker.exchange!r} with routing key "
        "'full'"
    )
    got = broker.get(full)
    assert got is not None and got[1].message_id == "rejected"
    assert len(rabbit_connects(connect_log)) == 2  # the admin fixture's and ours, reused


def test_missing_exchange_is_permanent_and_the_next_send_reconnects(broker: Broker) -> None:
    missing = make_ctx(step={"exchange": f"{broker.exchange}-missing", "routing_key": "x"})

    with pytest.raises(ConnectorError) as caught:
        send(missing)
    send(make_ctx(step={"exchange": broker.exchange, "routing_key": ROUTING_KEY}))

    assert not caught.value.retryable
    assert "404 NOT_FOUND - no exchange" in caught.value.message
    assert broker.get() is not None


def test_wrong_password_is_permanent_and_never_leaks(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # pika's own debug logs included
    ctx = make_ctx(
        step={"exchange": broker.exchange, "routing_key": ROUTING_KEY},
        secrets={"password": CANARY},
    )

    with pytest.raises(ConnectorError) as caught:
        send(ctx)
    check = AmqpDestination().check(ctx)

    assert not caught.value.retryable
    assert caught.value.message == (
        f"127.0.0.1:{RABBIT_PORT} refused the login of user 'guest': wrong username or password"
    )
    assert isinstance(caught.value.__cause__, pika.exceptions.ProbableAuthenticationError)
    assert not check.ok and "wrong username or password" in check.message
    texts = [error_texts(caught.value), check.message]
    texts += [r.getMessage() + str(r.exc_info) + str(r.exc_text) for r in caplog.records]
    assert caplog.records  # pika did log the failed attempt...
    assert not any(CANARY in text for text in texts)  # ...without the password


def test_unknown_virtual_host_is_permanent(broker: Broker) -> None:
    ctx = make_ctx(
        connection={"virtual_host": "no-such-vhost"},
        step={"exchange": broker.exchange, "routing_key": ROUTING_KEY},
    )
    with pytest.raises(ConnectorError) as caught:
        send(ctx)
    assert not caught.value.retryable
    assert "virtual host 'no-such-vhost'" in caught.value.message


def test_closed_port_is_retryable(closed_port: int) -> None:
    ctx = make_ctx(connection={"port": closed_port}, step={"exchange": "", "routing_key": "q"})

    with pytest.raises(RetryableConnectorError) as caught:
        send(ctx)
    check = AmqpDestination().check(ctx)

    assert caught.value.message == (
        f"could not connect to 127.0.0.1:{closed_port}: Connection refused"
    )
    assert not check.ok and check.message == caught.value.message


def test_check_reports_product_and_version() -> None:
    result = AmqpDestination().check(make_ctx())
    assert result.ok
    assert (
        result.message.startswith("connected to RabbitMQ 3.")
        and f"at 127.0.0.1:{RABBIT_PORT}, virtual host '/', in " in result.message
    )


def test_egress_refusal_sends_nothing(connect_log: list[Any]) -> None:
    ctx = make_ctx(step={"exchange": "", "routing_key": "q"}, egress=EgressPolicy())

    with pytest.raises(EgressDenied) as caught:
        send(ctx)
    check = AmqpDestination().check(ctx)

    assert not caught.value.retryable and "refused (loopback)" in caught.value.message
    assert not check.ok and "refused (loopback)" in check.message
    assert connect_log == []


def test_no_egress_policy_means_no_connection(connect_log: list[Any]) -> None:
    ctx = make_ctx(step={"exchange": "", "routing_key": "q"}, egress=None)
    with pytest.raises(ConnectorError, match="no egress policy"):
        send(ctx)
    assert not AmqpDestination().check(ctx).ok
    assert connect_log == []


def test_host_is_resolved_through_the_egress_policy(
    broker: Broker, fake_dns: FakeDNS, connect_log: list[Any]
) -> None:
    fake_dns.set("rabbit.internal.test", ["127.0.0.1"])
    ctx = make_ctx(
        connection={"host": "rabbit.internal.test"},
        step={"exchange": broker.exchange, "routing_key": ROUTING_KEY},
    )

    send(ctx)

    assert fake_dns.lookups == ["rabbit.internal.test"]
    assert all(address[0] == "127.0.0.1" for address in connect_log)
    assert broker.get() is not None


class Proxy:
    """A TCP relay on 127.0.0.1 to RabbitMQ that a test can cut or stall."""

    def __init__(self) -> None:
        self.stalled = threading.Event()  # broker -> client bytes are held back while set
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", RABBIT_PORT), timeout=5)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True).start()
            threading.Thread(
                target=self._pipe, args=(upstream, client, self.stalled), daemon=True
            ).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, hold: threading.Event | None) -> None:
        try:
            while True:
                ready, _, _ = select.select([source], [], [], 0.05)
                while hold is not None and hold.is_set():
                    time.sleep(0.01)  # checked after select: bytes that just arrived wait too
                if not ready:
                    continue
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except (OSError, ValueError):  # ValueError: select on a socket closed meanwhile
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Drop every relayed connection, as a broker restart or a NAT timeout would."""
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.stalled.clear()
        self.cut()
        self._listener.close()
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    relay = Proxy()
    yield relay
    amqp.close_cached_connections()
    relay.close()


def test_connection_is_reused_and_reopened_after_it_dropped(
    broker: Broker, proxy: Proxy, connect_log: list[Any]
) -> None:
    ctx = make_ctx(
        connection={"port": proxy.port},
        step={"exchange": broker.exchange, "routing_key": ROUTING_KEY},
    )

    send(ctx, key="one")
    send(ctx, key="two")
    assert len(rabbit_connects(connect_log, proxy.port)) == 1
    proxy.cut()
    time.sleep(0.1)
    send(ctx, key="three")  # the probe notices the dead link and reconnects first

    assert len(rabbit_connects(connect_log, proxy.port)) == 2
    ids = []
    while (got := broker.get()) is not None:
        ids.append(got[1].message_id)
    assert ids == ["one", "two", "three"]


def test_no_confirm_within_the_timeout_is_retryable(broker: Broker, proxy: Proxy) -> None:
    ctx = make_ctx(
        connection={"port": proxy.port, "confirm_timeout_seconds": 0.3},
        step={"exchange": broker.exchange, "routing_key": ROUTING_KEY},
    )
    send(ctx, key="warm-up")  # connection and channel are open before the stall
    proxy.stalled.set()

    started = time.monotonic()
    with pytest.raises(RetryableConnectorError) as caught:
        send(ctx)
    elapsed = time.monotonic() - started
    proxy.stalled.clear()
    send(ctx, key="after")  # the timed-out connection was dropped; a new one works

    assert caught.value.message == (
        f"127.0.0.1:{proxy.port} sent no publisher confirm within 0.3 s"
    )
    assert 0.25 < elapsed < 2


def test_closing_a_stalled_connection_gives_up_after_the_connect_timeout(
    broker: Broker, proxy: Proxy
) -> None:
    ctx = make_ctx(
        connection={"port": proxy.port, "connect_timeout_seconds": 0.3},
        step={"exchange": broker.exchange, "routing_key": ROUTING_KEY},
    )
    send(ctx)
    proxy.stalled.set()  # the broker's Close-Ok never arrives

    started = time.monotonic()
    amqp.close_cached_connections()

    assert time.monotonic() - started < 1  # not two missed heartbeats (minutes)


def test_each_thread_uses_its_own_connection(broker: Broker, connect_log: list[Any]) -> None:
    ctx = make_ctx(step={"exchange": broker.exchange, "routing_key": ROUTING_KEY})
    errors: list[BaseException] = []

    def in_thread() -> None:
        try:
            send(ctx, key="thread")
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)
        finally:
            amqp.close_cached_connections()

    send(ctx, key="main")
    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join(10)
    send(ctx, key="main-again")

    assert errors == []
    assert len(rabbit_connects(connect_log)) == 3  # admin + main thread + worker thread
    received = {broker.get()[1].message_id for _ in range(3)}  # type: ignore[index]
    assert received == {"main", "thread", "main-again"}


def test_tls_verifies_the_certificate_against_the_configured_name(
    tls_files: tuple[Path, Path], fake_dns: FakeDNS, connect_log: list[Any]
) -> None:
    probe = TlsProbe(*tls_files)
    fake_dns.set("rabbit.tls.test", ["127.0.0.1"])
    ctx = make_ctx(
        connection={"host": "rabbit.tls.test", "port": probe.port, "tls": True},
        step={"exchange": "", "routing_key": "q"},
    )
    try:
        with pytest.raises(ConnectorError) as caught:
            send(ctx)
    finally:
        probe.close()

    assert not caught.value.retryable
    assert f"TLS handshake with rabbit.tls.test:{probe.port} failed" in caught.value.message
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message
    assert probe.names == ["rabbit.tls.test"]  # SNI and verification use the name...
    # ...the socket the checked IP (pika's other connect is its loop's internal socketpair).
    assert [a for a in connect_log if a[1] == probe.port] == [("127.0.0.1", probe.port)]


def test_a_message_that_is_not_json_is_refused_before_connecting(connect_log: list[Any]) -> None:
    with pytest.raises(ConnectorError, match="cannot be sent as JSON"):
        send(make_ctx(step={"exchange": "", "routing_key": "q"}), {"total": float("nan")})
    assert connect_log == []


def test_missing_password_is_refused_before_connecting(connect_log: list[Any]) -> None:
    with pytest.raises(ConnectorError, match="no password is stored"):
        send(make_ctx(step={"exchange": "", "routing_key": "q"}, secrets={}))
    assert connect_log == []


def test_connection_schema_problems() -> None:
    schema = SPEC.connection_schema
    assert config_problems(schema, {"host": "rabbit.example.com", "username": "shop"}) == []
    full = {
        "host": "10.0.0.7",
        "port": 5671,
        "virtual_host": "retail",
        "username": "shop",
        "heartbeat_seconds": 30,
        "connect_timeout_seconds": 5,
        "confirm_timeout_seconds": 20,
        "tls": True,
    }
    assert config_problems(schema, full) == []
    problems = dict(
        config_problems(schema, {"host": "amqp://rabbit", "port": 0, "tls": "yes", "password": "x"})
    )
    assert problems["/host"] == "must be a host name or IP address (no scheme or port)"
    assert problems["/password"] == "is not a known field"  # secrets never live in config
    assert problems["/username"] == "is required"
    assert set(problems) == {"/host", "/port", "/tls", "/password", "/username"}
    assert SPEC.secret_fields == ("password",)


def test_step_schema_problems() -> None:
    schema = SPEC.step_schema
    assert config_problems(schema, {"exchange": "", "routing_key": "orders"}) == []
    assert config_problems(schema, {}) == [
        ("/exchange", "is required"),
        ("/routing_key", "is required"),
    ]
    problems = dict(
        config_problems(
            schema,
            {
                "exchange": "has space",
                "routing_key": "k" * 256,
                "mandatory": "yes",
                "headers": {"bad name": "v", "count": 3},
                "content_type": "text/plain",
            },
        )
    )
    assert problems["/exchange"] == (
        "may only contain letters, digits, hyphen, underscore, period and colon"
    )
    assert problems["/headers/bad name"] == "must be 1-128 printable ASCII characters"
    assert set(problems) == {
        "/exchange",
        "/routing_key",
        "/mandatory",
        "/headers/bad name",
        "/headers/count",
        "/content_type",
    }
    assert SPEC.idempotency == "key"
