"""A destination without idempotency is not retried blindly after an ambiguous failure.

Ambiguous: a timeout or dropped connection after the message may have been sent. Clear
pre-send failures (refused connection) and answered errors (4xx/5xx replies) keep retrying.
Unit level with fake connectors, then end to end with the email destination against a
scripted SMTP server on 127.0.0.1 that drops the connection right after receiving DATA.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from connectors.base import (
    ConnectorError,
    ConnectorSpec,
    Destination,
    RetryableConnectorError,
    SendResult,
)
from connectors.egress import EgressPolicy
from connectors.httputil import transport_error
from connectors.registry import ConnectorRegistry
from connectors.smtp_email import EmailDestination
from flows.definition import FlowDefinition
from flows.engine import AMBIGUOUS_DELIVERY, FlowRunner
from flows.ports import ResolvedConnection
from flows.results import DeliveryStatus, RunStatus, StepStatus
from tests.flows.test_engine import MemoryLedger

LOOPBACK = EgressPolicy.from_cidrs(["127.0.0.0/8", "::1/128"])
FAILURES: list[ConnectorError] = []
SENT: list[Any] = []


def _spec(key: str, idempotency: Any) -> ConnectorSpec:
    return ConnectorSpec(
        key=key,
        name=key,
        kind="destination",
        version=1,
        description="test",
        requires_connection=False,
        idempotency=idempotency,
    )


class NotIdempotent(Destination):
    spec = _spec("pager", "none")

    def send(self, ctx, message, *, idempotency_key):
        if FAILURES:
            raise FAILURES.pop(0)
        SENT.append(message)
        return SendResult(200, "ok")


class Keyed(NotIdempotent):
    spec = _spec("keyed", "key")


class Resolver:
    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config or {}

    def resolve(self, connection_id: int) -> ResolvedConnection | None:
        return ResolvedConnection("email", self.config, {})


def _runner(ledger: MemoryLedger, connections: Any = None) -> FlowRunner:
    FAILURES.clear()
    SENT.clear()
    return FlowRunner(
        registry=ConnectorRegistry([NotIdempotent, Keyed, EmailDestination]),
        connections=connections or Resolver(),
        deliveries=ledger,
        http=None,
        key_prefix="fgtest",
        egress=LOOPBACK,
    )


def _flow(connector: str, max_attempts: int = 5, **step: Any) -> FlowDefinition:
    return FlowDefinition.from_json(
        {
            "schema_version": 1,
            "trigger": {"type": "webhook"},
            "steps": [
                {
                    "id": "notify",
                    "type": "deliver",
                    "connector": connector,
                    "retry": {"max_attempts": max_attempts},
                    **step,
                }
            ],
            "edges": [{"from": "trigger", "to": "notify"}],
        }
    )


def test_ambiguous_failure_of_a_non_idempotent_destination_dead_letters_at_once() -> None:
    ledger = MemoryLedger()
    runner = _runner(ledger)
    FAILURES.append(RetryableConnectorError("no answer within 3 s", ambiguous=True))
    result = runner.run(1, _flow("pager"), {"n": 1})
    assert result.status == RunStatus.DEAD_LETTERED
    assert AMBIGUOUS_DELIVERY in (result.reason or "")
    assert "no answer within 3 s" in (result.reason or "")
    step = result.steps[0]
    assert step.status == StepStatus.FAILED
    assert step.error is not None and step.error["code"] == AMBIGUOUS_DELIVERY
    assert step.error["attempt"] == 1
    record = ledger.get(1, "notify")
    assert record is not None and record.status == DeliveryStatus.DEAD_LETTERED
    assert record.attempts == 1
    assert SENT == []


def test_clear_pre_send_failure_of_a_non_idempotent_destination_still_retries() -> None:
    ledger = MemoryLedger()
    runner = _runner(ledger)
    FAILURES.append(RetryableConnectorError("connection refused"))
    result = runner.run(2, _flow("pager"), {"n": 2})
    assert result.status == RunStatus.RETRYING
    assert result.steps[0].error["code"] == "delivery_failed"
    # the retry goes through and delivers once
    again = runner.run(2, _flow("pager"), {"n": 2})
    assert again.status == RunStatus.SUCCEEDED
    assert SENT == [{"n": 2}]


def test_answered_5xx_or_429_of_a_non_idempotent_destination_still_retries() -> None:
    runner = _runner(MemoryLedger())
    FAILURES.append(RetryableConnectorError("HTTP 503", status_code=503))
    assert runner.run(3, _flow("pager"), {}).status == RunStatus.RETRYING
    FAILURES.append(RetryableConnectorError("HTTP 429", status_code=429, retry_after_seconds=1))
    assert runner.run(4, _flow("pager"), {}).status == RunStatus.RETRYING


def test_ambiguous_failure_of_an_idempotent_destination_retries_with_the_same_key() -> None:
    runner = _runner(MemoryLedger())
    FAILURES.append(RetryableConnectorError("connection reset", ambiguous=True))
    result = runner.run(5, _flow("keyed"), {"n": 5})
    assert result.status == RunStatus.RETRYING
    assert AMBIGUOUS_DELIVERY not in (result.reason or "")


def test_http_read_timeout_and_reset_are_ambiguous_refusal_is_not() -> None:
    url = "http://127.0.0.1:9/orders"
    timeout = transport_error(requests.ReadTimeout("read timed out"), str, url=url, timeout=2)
    assert isinstance(timeout, RetryableConnectorError) and timeout.ambiguous
    connect_timeout = transport_error(requests.ConnectTimeout("x"), str, url=url, timeout=2)
    assert isinstance(connect_timeout, RetryableConnectorError)
    assert not connect_timeout.ambiguous
    # a real refused connection and a real reset after the request was read
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    try:
        requests.post(f"http://127.0.0.1:{closed}/x", json={}, timeout=2)
    except requests.RequestException as exc:
        refused = transport_error(exc, str, url=url, timeout=2)
    assert isinstance(refused, RetryableConnectorError) and not refused.ambiguous
    with _server(_read_request_then_close) as port:
        try:
            requests.post(f"http://127.0.0.1:{port}/x", json={"a": 1}, timeout=2)
        except requests.RequestException as exc:
            dropped = transport_error(exc, str, url=url, timeout=2)
    assert isinstance(dropped, RetryableConnectorError) and dropped.ambiguous


# --- the email destination against a server that drops the connection after DATA ---


def _read_request_then_close(conn: socket.socket, log: list[bytes]) -> None:
    conn.settimeout(2)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk
    log.append(data)


def _smtp_dropping_after_data(conn: socket.socket, log: list[bytes]) -> None:
    """Speaks just enough SMTP to take a message, then closes instead of answering 250."""
    conn.settimeout(3)
    reader = conn.makefile("rb")
    conn.sendall(b"220 drop.test ESMTP\r\n")
    while True:
        line = reader.readline()
        if not line:
            return
        verb = line.strip().split(b" ")[0].upper()
        if verb in (b"EHLO", b"HELO"):
            conn.sendall(b"250 drop.test\r\n")
        elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            conn.sendall(b"250 OK\r\n")
        elif verb == b"DATA":
            conn.sendall(b"354 go ahead\r\n")
            body = b""
            while not body.endswith(b"\r\n.\r\n"):
                chunk = reader.readline()
                if not chunk:
                    return
                body += chunk
            log.append(body)
            return  # the message was taken; the answer never comes
        else:
            conn.sendall(b"502 no\r\n")


class _server:
    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.log: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    self.handler(conn, self.log)
                except OSError:
                    pass

    def __enter__(self) -> int:
        self.thread.start()
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: Any) -> None:
        self.sock.close()
        self.thread.join(timeout=3)


@pytest.fixture
def dropping_smtp() -> Iterator[_server]:
    server = _server(_smtp_dropping_after_data)
    with server:
        yield server


def _email_config(port: int) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": "orders@shop.example",
        "helo_name": "flowgate.test",
        "timeout_seconds": 2,
    }


EMAIL_STEP = {
    "connection_id": 1,
    "config": {"to": ["ops@shop.example"], "subject": "Order ${n}", "body": "order ${n}"},
}


def test_email_dropped_after_data_is_dead_lettered_not_sent_twice(
    dropping_smtp: _server,
) -> None:
    port = int(dropping_smtp.sock.getsockname()[1])
    ledger = MemoryLedger()
    runner = _runner(ledger, Resolver(_email_config(port)))
    flow = _flow("email", max_attempts=5, **EMAIL_STEP)
    result = runner.run(9, flow, {"n": 1042})
    assert result.status == RunStatus.DEAD_LETTERED, result.reason
    assert AMBIGUOUS_DELIVERY in (result.reason or "")
    assert "may have been delivered" in (result.reason or "")
    assert result.steps[0].error["code"] == AMBIGUOUS_DELIVERY
    assert len(dropping_smtp.log) == 1 and b"order 1042" in dropping_smtp.log[0]
    # a recovered/replayed walk of the same run does not send it again on its own
    assert runner.run(9, flow, {"n": 1042}).status == RunStatus.DEAD_LETTERED
    assert len(dropping_smtp.log) == 1


def test_email_refused_connection_still_retries() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    runner = _runner(MemoryLedger(), Resolver(_email_config(closed)))
    result = runner.run(10, _flow("email", max_attempts=5, **EMAIL_STEP), {"n": 1})
    assert result.status == RunStatus.RETRYING
    assert result.steps[0].error["code"] == "delivery_failed"


def test_email_dropped_before_data_still_retries() -> None:
    def drop_at_rcpt(conn: socket.socket, log: list[bytes]) -> None:
        conn.settimeout(3)
        reader = conn.makefile("rb")
        conn.sendall(b"220 drop.test ESMTP\r\n")
        while line := reader.readline():
            if line.upper().startswith(b"RCPT"):
                return  # nothing was handed over yet
            conn.sendall(b"250 OK\r\n")

    with _server(drop_at_rcpt) as port:
        runner = _runner(MemoryLedger(), Resolver(_email_config(port)))
        result = runner.run(11, _flow("email", max_attempts=5, **EMAIL_STEP), {"n": 1})
    assert result.status == RunStatus.RETRYING, result.reason
    assert AMBIGUOUS_DELIVERY not in (result.reason or "")
