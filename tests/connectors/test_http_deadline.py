"""The HTTP destination's total deadline per attempt (reliability case 12c, "slow drip").

A destination that answers one byte every 0.3 s never trips the per-read timeout, so
without a total deadline one attempt could hold a worker forever. Real sockets on
127.0.0.1: a raw server (plain or TLS) whose first connection drips, either the status
line itself or the body after complete headers, and whose later connections answer at once.
Plain http:// goes through the urllib3 pool (``_send_direct``), https:// through requests.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from connectors.base import ConnectorContext, RetryableConnectorError
from connectors.deadline import WATCHDOG
from connectors.egress import plain_http_pool
from connectors.http import HttpDestination
from connectors.httputil import attempt_deadline, transport_error

if TYPE_CHECKING:
    from conftest import FakeServer

MakeContext = Callable[..., ConnectorContext]
KEY = "run-12:dest-c"
TOKEN = "tok-CANARY-12c-drip"
TIMEOUT = 1.0
DEADLINE = attempt_deadline(TIMEOUT)  # 4 s
MARGIN = 1.5  # scheduling slack on a loaded CI machine; the watchdog itself is ~ms late
DRIP_INTERVAL = 0.3
DRIP_BYTES = 66  # about 20 s of dripping: far past the deadline
STATUS_AND_HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
ANSWER = b'{"ok": true}'


class DripServer:
    """A raw HTTP/1.1 server: its first connection drips, later ones answer at once.

    ``phase="status"`` drips the status line itself (nothing complete arrives before the
    deadline); ``phase="body"`` sends complete headers and then drips the body.
    """

    def __init__(
        self, phase: str, tls: ssl.SSLContext | None = None, drip_bytes: int = DRIP_BYTES
    ) -> None:
        self.phase = phase
        self.tls = tls
        self.drip_bytes = drip_bytes
        self.accepted = 0
        self.drip_ended = threading.Event()  # the client closed the dripping connection
        self.drip_sent = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self) -> str:
        # TLS: the test certificate names "localhost" only.
        return f"https://localhost:{self.port}" if self.tls else f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            first = self.accepted == 1
            threading.Thread(target=self._handle, args=(conn, first), daemon=True).start()

    def _handle(self, conn: socket.socket, first: bool) -> None:
        try:
            conn.settimeout(30)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            _read_request(conn)
            if first:
                self._drip(conn)
            else:
                conn.sendall(
                    b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(ANSWER)}\r\n\r\n".encode()
                    + ANSWER
                )
                while conn.recv(4096):  # keep-alive until the client hangs up
                    pass
        except OSError:  # ssl.SSLError too: the client hung up on us
            pass
        finally:
            conn.close()

    def _drip(self, conn: socket.socket) -> None:
        if self.phase == "status":
            payload = STATUS_AND_HEADERS + b"Content-Length: 2\r\n\r\n{}"
        else:
            length = f"Content-Length: {self.drip_bytes}\r\n\r\n".encode()
            conn.sendall(STATUS_AND_HEADERS + length)
            payload = b"x" * self.drip_bytes
        try:
            for byte in payload[: self.drip_bytes]:
                if self._stop.wait(DRIP_INTERVAL):
                    return
                conn.sendall(bytes([byte]))  # one TCP segment, one TLS record
                self.drip_sent += 1
        except OSError:
            self.drip_ended.set()


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)


@pytest.fixture
def server_tls(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    return context


@pytest.fixture
def trust_test_certificate(
    loopback_session: requests.Session, tls_files: tuple[Path, Path]
) -> requests.Session:
    loopback_session.verify = str(tls_files[0])
    return loopback_session


@pytest.fixture(params=["http", "https"])
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def drip_server(
    request: pytest.FixtureRequest,
    scheme: str,
    server_tls: ssl.SSLContext,
    trust_test_certificate: requests.Session,
) -> Iterator[DripServer]:
    server = DripServer(request.param, server_tls if scheme == "https" else None)
    yield server
    server.stop()


def _send(ctx: ConnectorContext) -> Any:
    return HttpDestination().send(ctx, {"order": 12}, idempotency_key=KEY)


def _ctx(make_ctx: MakeContext, url: str) -> ConnectorContext:
    return make_ctx(
        {"base_url": url, "auth": "bearer", "timeout_seconds": TIMEOUT},
        {"path": "/orders"},
        secrets={"token": TOKEN},
    )


def test_the_deadline_is_twice_the_timeout_plus_two_seconds() -> None:
    assert attempt_deadline(1) == 4
    assert attempt_deadline(10) == 22  # the default timeout
    assert attempt_deadline(0.1) == pytest.approx(2.2)  # the schema's minimum


@pytest.mark.slow
@pytest.mark.parametrize("drip_server", ["status", "body"], indirect=True)
def test_a_dripping_destination_is_cut_off_at_the_deadline_like_a_read_timeout(
    drip_server: DripServer,
    scheme: str,
    make_ctx: MakeContext,
    loopback_session: requests.Session,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = drip_server.url()
    # http:// takes the direct urllib3 path, https:// the requests one: both are bounded.
    assert (plain_http_pool(loopback_session, url) is None) == (scheme == "https")
    ctx = _ctx(make_ctx, url)

    started = time.monotonic()
    with pytest.raises(RetryableConnectorError) as info:
        _send(ctx)
    elapsed = time.monotonic() - started

    assert DEADLINE <= elapsed < DEADLINE + MARGIN
    assert drip_server.drip_sent < DRIP_BYTES  # the answer was still dripping
    error = info.value
    host = url.split("//")[1]
    assert error.message == (
        f"no complete response from {url.split('//')[0]}//{host}: the destination answered "
        "too slowly (total deadline exceeded after 4 s)"
    )
    # Exactly what a read timeout gives: retryable, ambiguous (the request went out), no
    # status, so the engine retries it with the same idempotency key.
    read_timeout = transport_error(requests.ReadTimeout("t"), str, url=url, timeout=TIMEOUT)
    assert (type(error), error.retryable, error.ambiguous, error.status_code) == (
        type(read_timeout),
        read_timeout.retryable,
        read_timeout.ambiguous,
        read_timeout.status_code,
    )
    assert error.response_excerpt == ""
    assert TOKEN not in f"{error!r} {error.message} {caplog.text}"

    # The cut connection was closed (the server's next write fails), never pooled: the
    # next delivery through the same session opens a new one and succeeds.
    assert drip_server.drip_ended.wait(3)
    result = _send(ctx)
    assert (result.status_code, result.response_excerpt) == (202, ANSWER.decode())
    assert drip_server.accepted == 2
    assert WATCHDOG.pending() == 0


@pytest.fixture
def answering_server(
    scheme: str, fake_server: FakeServer, tls_server: FakeServer, trust_test_certificate: Any
) -> FakeServer:
    return tls_server if scheme == "https" else fake_server


def _url(server: FakeServer, scheme: str) -> str:
    return f"https://localhost:{server.port}" if scheme == "https" else server.url


def test_a_slow_answer_within_the_deadline_still_succeeds(
    answering_server: FakeServer, scheme: str, make_ctx: MakeContext
) -> None:
    answering_server.reply(201, ANSWER, delay=0.5)
    result = _send(_ctx(make_ctx, _url(answering_server, scheme)))
    assert (result.status_code, result.response_excerpt) == (201, ANSWER.decode())
    assert WATCHDOG.pending() == 0


def test_an_answer_slower_than_the_timeout_but_within_the_deadline_succeeds(
    scheme: str,
    server_tls: ssl.SSLContext,
    trust_test_certificate: requests.Session,
    make_ctx: MakeContext,
) -> None:
    """8 bytes at 0.3 s: 2.4 s in all, past the 1 s timeout, but each read is quick."""
    server = DripServer("body", server_tls if scheme == "https" else None, drip_bytes=8)
    try:
        result = _send(_ctx(make_ctx, server.url()))
    finally:
        server.stop()
    assert (result.status_code, result.response_excerpt) == (200, "x" * 8)


def test_deliveries_share_one_watchdog_thread(
    answering_server: FakeServer, scheme: str, make_ctx: MakeContext
) -> None:
    ctx = _ctx(make_ctx, _url(answering_server, scheme))
    for _ in range(20):
        assert _send(ctx).status_code == 200
    watchdogs = [t for t in threading.enumerate() if t.name == "http-deadline"]
    assert len(watchdogs) == 1 and watchdogs[0].daemon
    assert WATCHDOG.pending() == 0


@pytest.mark.slow
def test_each_attempt_is_cut_alone_while_others_are_in_flight(
    server_tls: ssl.SSLContext,
    trust_test_certificate: requests.Session,
    fake_server: FakeServer,
    make_ctx: MakeContext,
) -> None:
    """Two drips (http and https) cut at 4 s while a slow, healthy delivery on another
    thread is in flight from 3 s to 5 s: only the drips fail."""
    drips = [DripServer("status"), DripServer("body", server_tls)]
    fake_server.reply(200, ANSWER, delay=2)
    healthy = make_ctx({"base_url": fake_server.url, "timeout_seconds": 3}, {"path": "/ok"})
    outcomes: dict[str, Any] = {}

    def deliver(name: str, ctx: ConnectorContext, wait: float = 0) -> None:
        time.sleep(wait)
        try:
            outcomes[name] = _send(ctx).status_code
        except RetryableConnectorError as exc:
            outcomes[name] = exc

    threads = [
        threading.Thread(target=deliver, args=(f"drip{i}", _ctx(make_ctx, s.url())))
        for i, s in enumerate(drips)
    ]
    threads.append(threading.Thread(target=deliver, args=("healthy", healthy, 3)))
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
    finally:
        for server in drips:
            server.stop()
    assert outcomes["healthy"] == 200
    for name in ("drip0", "drip1"):
        assert isinstance(outcomes[name], RetryableConnectorError)
        assert "total deadline exceeded after 4 s" in outcomes[name].message
    assert WATCHDOG.pending() == 0


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["http"])
@pytest.mark.parametrize("drip_server", ["status"], indirect=True)
def test_test_connection_and_the_token_request_are_bounded_too(
    drip_server: DripServer, make_ctx: MakeContext
) -> None:
    """ "Test connection" runs in a web thread and the OAuth2 token request before each
    delivery: neither may be held by a dripping server either."""
    url = drip_server.url()
    check_ctx = _ctx(make_ctx, url)
    started = time.monotonic()
    result = HttpDestination().check(check_ctx)
    assert time.monotonic() - started < DEADLINE + MARGIN
    assert not result.ok and "answered too slowly (total deadline exceeded after 4 s)" in (
        result.message
    )

    drip_server.accepted = 0  # the token endpoint's first connection drips too
    token_ctx = make_ctx(
        {
            "base_url": url,
            "auth": "oauth2_client_credentials",
            "token_url": f"{url}/token",
            "client_id": "flowgate",
            "timeout_seconds": TIMEOUT,
        },
        {"path": "/orders"},
        secrets={"client_secret": TOKEN},
    )
    started = time.monotonic()
    with pytest.raises(RetryableConnectorError) as info:
        _send(token_ctx)
    assert DEADLINE <= time.monotonic() - started < DEADLINE + MARGIN
    assert info.value.message.startswith("token request failed: no complete response")
    assert TOKEN not in info.value.message
    assert WATCHDOG.pending() == 0
