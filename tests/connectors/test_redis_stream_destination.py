"""RedisStreamDestination against the real Redis on 127.0.0.1:6379 (db 12, throwaway keys)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest
import redis

from connectors.base import ConnectorContext, ConnectorError, RetryableConnectorError
from connectors.config import config_problems
from connectors.egress import EgressDenied, EgressPolicy
from connectors.redis_stream import (
    MARKER_TTL_SECONDS,
    SPEC,
    RedisStreamDestination,
    marker_key,
)
from tests.support.tls_probe import TlsProbe

if TYPE_CHECKING:
    from conftest import FakeDNS

LOOPBACK = EgressPolicy.from_cidrs(["127.0.0.0/8"])
DB = 12
KEY = "run-41:dest-7"
CANARY = "pw-CANARY-3c2b1a09"


@pytest.fixture
def admin() -> Iterator[redis.Redis]:
    client = redis.Redis(host="127.0.0.1", port=6379, db=DB, socket_timeout=2)
    yield client
    client.close()


@pytest.fixture
def stream(admin: redis.Redis) -> Iterator[str]:
    name = f"flowgate-test:{uuid.uuid4().hex}"
    yield name
    leftovers = [name, *admin.scan_iter(match=f"{name}:*", count=1000)]
    admin.delete(*leftovers)


def make_ctx(
    connection: dict[str, Any] | None = None,
    step: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    egress: Any = LOOPBACK,
) -> ConnectorContext:
    return ConnectorContext(
        connection_config={"host": "127.0.0.1", "port": 6379, "db": DB, **(connection or {})},
        secrets=secrets or {},
        step_config=step or {},
        logger=logging.getLogger("tests.connectors.redis_stream"),
        http=None,
        egress=egress,
    )


def send(ctx: ConnectorContext, message: Any = None, key: str = KEY) -> Any:
    return RedisStreamDestination().send(ctx, message or {"order": 1}, idempotency_key=key)


def error_texts(exc: BaseException) -> str:
    """Everything an exception chain could show: messages, reprs, excerpts."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 50:
        parts += [str(current), repr(current), getattr(current, "response_excerpt", "")]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def test_adds_one_entry_with_the_json_payload_and_the_key(admin: redis.Redis, stream: str) -> None:
    message = {"customer": "Zoë Ünlü", "total": 12.5, "items": [{"sku": "€-1"}]}

    result = send(make_ctx(step={"stream": stream}), message)

    [(entry_id, fields)] = admin.xrange(stream)
    assert fields == {
        b"payload": '{"customer": "Zoë Ünlü", "total": 12.5, "items": [{"sku": "€-1"}]}'.encode(),
        b"idempotency_key": KEY.encode(),
    }
    assert result.status_code is None
    assert result.response_excerpt == f"added entry {entry_id.decode()}"


def test_resending_the_same_key_adds_nothing(admin: redis.Redis, stream: str) -> None:
    ctx = make_ctx(step={"stream": stream})

    first = send(ctx, {"attempt": 1})
    again = send(ctx, {"attempt": 2})  # a retry may carry a re-mapped message: still one entry
    other = send(ctx, {"attempt": 3}, key="run-42:dest-7")

    entries = admin.xrange(stream)
    assert [fields[b"idempotency_key"] for _, fields in entries] == [KEY.encode(), b"run-42:dest-7"]
    first_id = entries[0][0].decode()
    assert first.response_excerpt == f"added entry {first_id}"
    assert again.response_excerpt == f"already added as entry {first_id}; nothing added again"
    assert other.response_excerpt.startswith("added entry ")
    assert admin.get(marker_key(stream, KEY)) == first_id.encode()
    assert MARKER_TTL_SECONDS - 60 < admin.ttl(marker_key(stream, KEY)) <= MARKER_TTL_SECONDS


def test_every_connection_is_closed_after_the_call(stream: str) -> None:
    def open_to_redis() -> int:
        return sum(
            1
            for c in psutil.Process().net_connections(kind="tcp")
            if c.raddr and c.raddr.port == 6379 and c.status == psutil.CONN_ESTABLISHED
        )

    before = open_to_redis()
    for i in range(3):
        send(make_ctx(step={"stream": stream}), key=f"k-{i}")
    RedisStreamDestination().check(make_ctx())

    assert open_to_redis() == before


def test_uses_the_configured_payload_field(admin: redis.Redis, stream: str) -> None:
    send(make_ctx(step={"stream": stream, "payload_field": "order_json"}), {"a": 1})
    [(_, fields)] = admin.xrange(stream)
    assert fields == {b"order_json": b'{"a": 1}', b"idempotency_key": KEY.encode()}


def test_maxlen_trims_the_stream_approximately(admin: redis.Redis, stream: str) -> None:
    ctx = make_ctx(step={"stream": stream, "maxlen": 10})
    node_size = int(admin.config_get("stream-node-max-entries")["stream-node-max-entries"])
    total = 2 * node_size + 50

    for i in range(total):
        send(ctx, {"i": i}, key=f"k-{i}")

    length = admin.xlen(stream)
    # "MAXLEN ~" drops whole nodes: never below the limit, at most one node above it.
    assert 10 <= length <= 10 + node_size < total
    *_, (_, newest) = admin.xrange(stream)
    assert newest[b"payload"] == f'{{"i": {total - 1}}}'.encode()


def test_a_failed_xadd_leaves_no_marker(admin: redis.Redis, stream: str) -> None:
    admin.set(stream, "not a stream")

    with pytest.raises(ConnectorError) as caught:
        send(make_ctx(step={"stream": stream}))

    assert not caught.value.retryable
    assert "WRONGTYPE" in caught.value.message
    assert admin.exists(marker_key(stream, KEY)) == 0  # a retry after the fix still adds


def test_unknown_user_is_a_permanent_error_and_the_password_never_leaks(
    stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ctx = make_ctx(
        connection={"username": f"nobody-{uuid.uuid4().hex[:8]}"},
        step={"stream": stream},
        secrets={"password": CANARY},
    )

    with pytest.raises(ConnectorError) as caught:
        send(ctx)
    check = RedisStreamDestination().check(ctx)

    assert not caught.value.retryable
    assert "refused the credentials of user 'nobody-" in caught.value.message
    assert "invalid username-password pair" in caught.value.message
    assert not check.ok and "refused the credentials" in check.message
    texts = [error_texts(caught.value), check.message]
    texts += [r.getMessage() + str(r.exc_info) + str(r.exc_text) for r in caplog.records]
    assert not any(CANARY in text for text in texts)


def test_password_for_a_default_user_without_one_is_refused(stream: str) -> None:
    ctx = make_ctx(step={"stream": stream}, secrets={"password": CANARY})
    with pytest.raises(ConnectorError) as caught:
        send(ctx)
    assert not caught.value.retryable
    assert "refused the credentials of user 'default'" in caught.value.message
    assert CANARY not in error_texts(caught.value)


def test_closed_port_is_retryable(closed_port: int, stream: str) -> None:
    ctx = make_ctx(connection={"port": closed_port}, step={"stream": stream})

    with pytest.raises(RetryableConnectorError) as caught:
        send(ctx)
    check = RedisStreamDestination().check(ctx)

    assert f"could not reach 127.0.0.1:{closed_port}" in caught.value.message
    assert "refused" in caught.value.message.lower()
    assert not check.ok and f"could not reach 127.0.0.1:{closed_port}" in check.message


def test_database_out_of_range_is_permanent(stream: str) -> None:
    with pytest.raises(ConnectorError) as caught:
        send(make_ctx(connection={"db": 65535}, step={"stream": stream}))
    assert not caught.value.retryable
    assert "DB index is out of range" in caught.value.message


def test_check_reports_the_redis_version() -> None:
    result = RedisStreamDestination().check(make_ctx())
    version = redis.Redis(host="127.0.0.1", port=6379).info("server")["redis_version"]
    assert result.ok
    assert f"connected to Redis {version} (standalone) at 127.0.0.1:6379, db {DB}" in (
        result.message
    )


def test_egress_refusal_sends_nothing(stream: str, connect_log: list[Any]) -> None:
    ctx = make_ctx(step={"stream": stream}, egress=EgressPolicy())

    with pytest.raises(EgressDenied) as caught:
        send(ctx)
    check = RedisStreamDestination().check(ctx)

    assert not caught.value.retryable and "loopback" in caught.value.message
    assert not check.ok and "refused (loopback)" in check.message
    assert connect_log == []


def test_no_egress_policy_means_no_connection(stream: str, connect_log: list[Any]) -> None:
    ctx = make_ctx(step={"stream": stream}, egress=None)
    with pytest.raises(ConnectorError, match="no egress policy"):
        send(ctx)
    assert not RedisStreamDestination().check(ctx).ok
    assert connect_log == []


def test_host_is_resolved_once_and_the_checked_address_is_used(
    fake_dns: FakeDNS, admin: redis.Redis, stream: str, connect_log: list[Any]
) -> None:
    fake_dns.set("redis.internal.test", ["127.0.0.1"])

    send(make_ctx(connection={"host": "redis.internal.test"}, step={"stream": stream}))

    assert fake_dns.lookups == ["redis.internal.test"]
    assert [address[0] for address in connect_log] == ["127.0.0.1"]
    assert admin.xlen(stream) == 1


def test_tls_verifies_the_certificate_against_the_configured_name(
    tls_files: tuple[Path, Path], fake_dns: FakeDNS, stream: str, connect_log: list[Any]
) -> None:
    probe = TlsProbe(*tls_files)
    fake_dns.set("redis.tls.test", ["127.0.0.1"])
    ctx = make_ctx(
        connection={
            "host": "redis.tls.test",
            "port": probe.port,
            "tls": True,
            "timeout_seconds": 2,
        },
        step={"stream": stream},
    )
    try:
        with pytest.raises(ConnectorError) as caught:
            send(ctx)
    finally:
        probe.close()

    assert not caught.value.retryable
    assert "TLS handshake with redis.tls.test" in caught.value.message
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message
    assert probe.names == ["redis.tls.test"]  # SNI and verification use the name...
    assert [address[0] for address in connect_log] == ["127.0.0.1"]  # ...the socket the IP


def test_a_message_that_is_not_json_is_refused_before_connecting(
    stream: str, connect_log: list[Any]
) -> None:
    with pytest.raises(ConnectorError, match="cannot be sent as JSON"):
        send(make_ctx(step={"stream": stream}), {"total": float("nan")})
    assert connect_log == []


def test_connection_schema_problems() -> None:
    schema = SPEC.connection_schema
    assert config_problems(schema, {"host": "redis.example.com", "port": 6380, "db": 2}) == []
    assert config_problems(schema, {"host": "10.0.0.5", "username": "app", "tls": True}) == []
    problems = dict(
        config_problems(
            schema, {"host": "redis://cache:6379", "port": 0, "db": -1, "url": "x", "tls": "yes"}
        )
    )
    assert problems["/host"] == "must be a host name or IP address (no scheme or port)"
    assert set(problems) == {"/host", "/port", "/db", "/url", "/tls"}
    assert problems["/url"] == "is not a known field"
    assert config_problems(schema, {}) == [("/host", "is required")]
    assert "password" not in schema["properties"] and SPEC.secret_fields == ("password",)


def test_step_schema_problems() -> None:
    schema = SPEC.step_schema
    assert config_problems(schema, {"stream": "orders:created", "maxlen": 1000}) == []
    assert config_problems(schema, {}) == [("/stream", "is required")]
    problems = dict(
        config_problems(
            schema, {"stream": "has space", "maxlen": 0, "payload_field": "idempotency_key"}
        )
    )
    assert problems == {
        "/stream": "cannot contain spaces or control characters",
        "/maxlen": "0 is less than the minimum of 1",
        "/payload_field": "'idempotency_key' is set by the connector",
    }
    assert SPEC.idempotency == "key"


def test_a_stored_step_config_that_breaks_the_schema_is_refused(connect_log: list[Any]) -> None:
    with pytest.raises(ConnectorError, match="step config is invalid: /stream is required"):
        send(make_ctx(step={}))
    assert connect_log == []
