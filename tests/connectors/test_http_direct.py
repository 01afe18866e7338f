"""The HTTP destination's direct urllib3 path for plain http:// (connectors.egress
``plain_http_pool``): same requests, same egress check, same error verdicts as through
requests, and kept-alive connections reused."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import urllib3

from connectors.base import ConnectorContext, ConnectorError, RetryableConnectorError
from connectors.egress import EgressDenied, EgressPolicy, guarded_session, plain_http_pool
from connectors.http import HttpDestination
from connectors.httputil import as_requests_error, transport_error

MakeContext = Callable[..., ConnectorContext]


class _KeepAliveServer:
    """HTTP/1.1 with keep-alive (like node's server); counts accepted connections."""

    def __init__(self) -> None:
        self.connections = 0
        self.bodies: list[bytes] = []
        self.user_agents: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                outer.connections += 1
                super().setup()

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.bodies.append(body)
                outer.user_agents.append(self.headers.get("User-Agent", ""))
                answer = b'{"ok": true}'
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def keepalive() -> Iterator[_KeepAliveServer]:
    server = _KeepAliveServer()
    yield server
    server.stop()


def _send(ctx: ConnectorContext, n: int) -> Any:
    return HttpDestination().send(ctx, {"order": n}, idempotency_key=f"key-{n}")


def test_the_pool_is_offered_only_for_plain_http_on_a_guarded_session() -> None:
    policy = EgressPolicy.from_cidrs(["127.0.0.0/8"])
    with guarded_session(policy) as guarded:
        assert plain_http_pool(guarded, "http://127.0.0.1:9/x") is not None
        # https keeps the session's certificate settings: through requests
        assert plain_http_pool(guarded, "https://127.0.0.1:9/x") is None
        guarded.proxies = {"http": "http://127.0.0.1:3128"}
        assert plain_http_pool(guarded, "http://127.0.0.1:9/x") is None
    with requests.Session() as plain:  # not guarded: never bypass its adapters
        assert plain_http_pool(plain, "http://127.0.0.1:9/x") is None


def test_deliveries_reuse_one_kept_alive_connection(
    keepalive: _KeepAliveServer, make_ctx: MakeContext, connect_log: list[Any]
) -> None:
    ctx = make_ctx({"base_url": keepalive.url}, {"path": "/orders"})
    results = [_send(ctx, n) for n in range(5)]
    assert [r.status_code for r in results] == [202] * 5
    assert results[0].response_excerpt == '{"ok": true}'
    assert keepalive.bodies == [f'{{"order":{n}}}'.encode() for n in range(5)]
    assert keepalive.user_agents == ["Flowgate/0.1"] * 5  # the session's defaults still apply
    assert keepalive.connections == 1 and len(connect_log) == 1


def test_the_egress_check_still_guards_every_new_connection(
    keepalive: _KeepAliveServer, make_ctx: MakeContext, default_session: requests.Session
) -> None:
    assert plain_http_pool(default_session, keepalive.url) is not None  # the direct path
    with pytest.raises(EgressDenied):
        _send(make_ctx({"base_url": keepalive.url}, http=default_session), 1)
    assert keepalive.bodies == [] and keepalive.connections == 0


def test_a_refused_connection_is_retryable_and_not_ambiguous(
    closed_port: int, make_ctx: MakeContext
) -> None:
    with pytest.raises(RetryableConnectorError) as info:
        _send(make_ctx({"base_url": f"http://127.0.0.1:{closed_port}"}), 1)
    assert "could not connect" in info.value.message
    assert not getattr(info.value, "ambiguous", False)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (urllib3.exceptions.ConnectTimeoutError(None, "slow"), requests.ConnectTimeout),
        (urllib3.exceptions.ReadTimeoutError(None, "/", "slow"), requests.ReadTimeout),
        (urllib3.exceptions.NewConnectionError(None, "refused"), requests.ConnectionError),
        (
            urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104)),
            requests.ConnectionError,
        ),
        (urllib3.exceptions.SSLError("bad cert"), requests.exceptions.SSLError),
    ],
)
def test_urllib3_errors_map_to_what_requests_would_raise(
    error: Exception, expected: type[Exception]
) -> None:
    mapped = as_requests_error(error)
    assert type(mapped) is expected


def test_verdicts_match_the_requests_path() -> None:
    def verdict(error: Exception) -> tuple[type, bool, bool]:
        made = transport_error(as_requests_error(error), str, url="http://h/x", timeout=1)
        return type(made), made.retryable, bool(getattr(made, "ambiguous", False))

    # A reset after the request went out may have been processed: ambiguous.
    aborted = urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104))
    assert verdict(aborted) == (RetryableConnectorError, True, True)
    # No answer within the read timeout: ambiguous too.
    assert verdict(urllib3.exceptions.ReadTimeoutError(None, "/", "t")) == (
        RetryableConnectorError,
        True,
        True,
    )
    # Never connected: safe to retry.
    refused = urllib3.exceptions.NewConnectionError(None, "refused")
    assert verdict(refused) == (RetryableConnectorError, True, False)
    # A TLS failure is configuration: permanent.
    assert verdict(urllib3.exceptions.SSLError("x"))[0] is ConnectorError


def test_a_body_left_unread_drops_the_connection(make_ctx: MakeContext) -> None:
    """An answer larger than what the excerpt reads cannot leave bytes on a reused socket."""
    big = b"x" * (200 * 1024)
    accepted = []

    def serve(listener: socket.socket) -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            accepted.append(conn)
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                + f"Content-Length: {len(big)}\r\n\r\n".encode()
                + big
            )

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(2)
    thread = threading.Thread(target=serve, args=(listener,), daemon=True)
    thread.start()
    ctx = make_ctx({"base_url": f"http://127.0.0.1:{listener.getsockname()[1]}"})
    try:
        assert _send(ctx, 1).response_excerpt.startswith("x")
        assert _send(ctx, 2).response_excerpt.startswith("x")
        thread.join(5)
        assert len(accepted) == 2  # the second delivery opened a fresh connection
    finally:
        for conn in accepted:
            conn.close()
        listener.close()
