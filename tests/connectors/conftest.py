"""Fixtures for connector tests: a real local HTTP server and a network seatbelt.

This machine must never send a packet off the loopback interface, so two autouse fixtures
make that impossible for the whole folder: name lookups only accept numeric addresses (plus
``localhost`` from /etc/hosts, and names a test stubs with ``fake_dns``), and any socket
connect to a non-loopback address fails the test before it happens.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connectors.base import ConnectorContext
from connectors.egress import EgressPolicy, guarded_session

LOOPBACK_POLICY = EgressPolicy.from_cidrs(["127.0.0.0/8"])


@pytest.fixture(autouse=True)
def _numeric_dns_only(monkeypatch: pytest.MonkeyPatch) -> None:
    real_getaddrinfo = socket.getaddrinfo

    def numeric_only(
        host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> Any:
        if host not in (None, "localhost"):
            flags |= socket.AI_NUMERICHOST  # never ask the (non-loopback) DNS server
        return real_getaddrinfo(host, port, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", numeric_only)


@pytest.fixture(autouse=True)
def connect_log(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address a socket tried to connect to; non-loopback attempts fail the test."""
    log: list[Any] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def check(address: Any) -> None:
        log.append(address)
        host = str(address[0]).split("%")[0]
        if not ipaddress.ip_address(host).is_loopback:
            raise AssertionError(f"test tried to connect to non-loopback {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return log


class FakeDNS:
    """Answers for made-up names; each lookup consumes one answer, the last one repeats."""

    def __init__(self, fallback: Callable[..., Any]) -> None:
        self._fallback = fallback
        self._answers: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    def set(self, name: str, *answers: list[str]) -> None:
        self._answers[name] = list(answers)

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in self._answers:
            return self._fallback(host, port, *args, **kwargs)
        self.lookups.append(host)
        queue = self._answers[host]
        ips = queue.pop(0) if len(queue) > 1 else queue[0]
        return [_addrinfo(ip, int(port or 0)) for ip in ips]


def _addrinfo(ip: str, port: int) -> tuple[Any, ...]:
    if ipaddress.ip_address(ip).version == 6:
        return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    dns = FakeDNS(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", dns.getaddrinfo)
    return dns


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # keys lower-cased
    body: bytes


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class FakeServer:
    """A real HTTP server on 127.0.0.1 that records requests and answers as told."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.requests: list[RecordedRequest] = []
        self.answer = Reply()
        self._stopping = threading.Event()
        self._httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        if ssl_context is not None:
            self._httpd.socket = ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def reply(
        self,
        status: int = 200,
        body: bytes | str = b"",
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer every following request with this status, body and headers."""
        raw = body.encode() if isinstance(body, str) else body
        self.answer = Reply(status, raw, dict(headers or {}), delay)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping on a delay
        self._httpd.shutdown()
        self._httpd.server_close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out hang up on purpose; their broken pipes are expected


def _make_handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            server.requests.append(
                RecordedRequest(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
            )
            answer = server.answer
            if answer.delay and server._stopping.wait(answer.delay):
                return
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def loopback_session() -> Iterator[requests.Session]:
    """A guarded session whose policy allowlists 127.0.0.0/8, as an operator could."""
    with guarded_session(LOOPBACK_POLICY) as session:
        yield session


@pytest.fixture
def default_session() -> Iterator[requests.Session]:
    """A guarded session with the default policy: loopback refused."""
    with guarded_session(EgressPolicy()) as session:
        yield session


MakeContext = Callable[..., ConnectorContext]


@pytest.fixture
def make_ctx(loopback_session: requests.Session) -> MakeContext:
    """Build a ConnectorContext; ``http`` defaults to the loopback-allowing session."""

    def make(
        connection: Mapping[str, Any] | None = None,
        step: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
        http: requests.Session | None = None,
    ) -> ConnectorContext:
        return ConnectorContext(
            connection_config=dict(connection or {}),
            secrets=dict(secrets or {}),
            step_config=dict(step or {}),
            logger=logging.getLogger("tests.connectors"),
            http=http or loopback_session,
        )

    return make


# --- TLS: a self-signed certificate for the name "localhost" only ---


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tls_files: tuple[Path, Path]) -> Iterator[FakeServer]:
    """A FakeServer speaking HTTPS with the ``localhost`` certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    server = FakeServer(ssl_context=context)
    server.start()
    yield server
    server.stop()
