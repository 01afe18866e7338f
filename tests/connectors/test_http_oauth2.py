"""HttpDestination with OAuth2 client credentials against a real local token server + API."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote_plus

import pytest
import requests
from jsonschema import Draft202012Validator

import connectors.http as http_module
from connectors.base import ConnectorContext, ConnectorError, RetryableConnectorError
from connectors.config import config_problems
from connectors.egress import EgressDenied
from connectors.http import OAUTH2, SPEC, HttpDestination, clear_token_cache
from connectors.redaction import MASK

MakeContext = Callable[..., ConnectorContext]
KEY = "run-77:dest-3"
CLIENT_ID = "flowgate client"
SECRET = "CANARY-s3cr:et/+ &=é-5a4b"  # characters that must be form-encoded
TOKEN_PREFIX = "issued-CANARY-tok"


@dataclass
class Seen:
    path: str
    headers: dict[str, str]  # keys lower-cased
    body: bytes


@dataclass
class Scripted:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class OAuthServer:
    """One loopback server: ``/token`` issues tokens, every other path is the API.

    The token endpoint issues a new token per request unless ``token_replies`` holds
    scripted answers (consumed in order). The API answers 401 unless the bearer token is the
    latest one issued and not revoked, and echoes the Authorization header it received.
    """

    def __init__(self) -> None:
        self.token_requests: list[Seen] = []
        self.api_requests: list[Seen] = []
        self.token_replies: list[Scripted] = []
        self.api_replies: list[Scripted] = []
        self.expires_in: Any = 3600
        self.issued: list[str] = []
        self.revoked: set[str] = set()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.token_url = f"{self.url}/token"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def answer_token(self, seen: Seen) -> Scripted:
        self.token_requests.append(seen)
        if self.token_replies:
            return self.token_replies.pop(0)
        token = f"{TOKEN_PREFIX}-{len(self.issued) + 1}"
        self.issued.append(token)
        body = {"access_token": token, "token_type": "bearer", "expires_in": self.expires_in}
        return Scripted(200, json.dumps(body), {"Content-Type": "application/json"})

    def answer_api(self, seen: Seen) -> Scripted:
        self.api_requests.append(seen)
        if self.api_replies:
            return self.api_replies.pop(0)
        auth = seen.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ")
        if not self.issued or token != self.issued[-1] or token in self.revoked:
            return Scripted(401, json.dumps({"error": "invalid_token", "got": auth}))
        return Scripted(200, json.dumps({"ok": True, "echo": auth}))


def _handler(server: OAuthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen = Seen(
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            if self.path == "/token":
                answer = server.answer_token(seen)
            else:
                answer = server.answer_api(seen)
            if answer.delay and server._stopping.wait(answer.delay):
                return
            raw = answer.body.encode()
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def oauth_server() -> Iterator[OAuthServer]:
    server = OAuthServer()
    server._thread.start()
    yield server
    server._stopping.set()
    server._httpd.shutdown()
    server._httpd.server_close()


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> Iterator[None]:
    clear_token_cache()
    yield
    clear_token_cache()


def connection(server: OAuthServer, **extra: Any) -> dict[str, Any]:
    return {
        "base_url": f"{server.url}/api",
        "auth": OAUTH2,
        "token_url": server.token_url,
        "client_id": CLIENT_ID,
        **extra,
    }


def oauth_ctx(
    make_ctx: MakeContext, server: OAuthServer, secret: str = SECRET, **extra: Any
) -> ConnectorContext:
    return make_ctx(connection(server, **extra), {"path": "/orders"}, {"client_secret": secret})


def send(ctx: ConnectorContext) -> Any:
    return HttpDestination().send(ctx, {"order": 1}, idempotency_key=KEY)


def form(seen: Seen) -> dict[str, list[str]]:
    return parse_qs(seen.body.decode("ascii"), keep_blank_values=True, strict_parsing=True)


# --- token caching ---


def test_token_is_fetched_once_and_reused_across_sends(
    oauth_server: OAuthServer, make_ctx: MakeContext
) -> None:
    for _ in range(3):
        result = send(oauth_ctx(make_ctx, oauth_server))
        assert result.status_code == 200
    assert len(oauth_server.token_requests) == 1
    token = oauth_server.issued[0]
    assert [r.headers["authorization"] for r in oauth_server.api_requests] == [
        f"Bearer {token}"
    ] * 3
    assert [r.path for r in oauth_server.api_requests] == ["/api/orders"] * 3


def test_token_is_refreshed_when_less_than_30_seconds_are_left(
    oauth_server: OAuthServer, make_ctx: MakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(http_module, "_clock", lambda: now[0])
    oauth_server.expires_in = 100
    send(oauth_ctx(make_ctx, oauth_server))
    now[0] += 69  # 31 s left: still good
    send(oauth_ctx(make_ctx, oauth_server))
    assert len(oauth_server.token_requests) == 1
    now[0] += 2  # 29 s left: refresh
    send(oauth_ctx(make_ctx, oauth_server))
    assert len(oauth_server.token_requests) == 2
    assert oauth_server.api_requests[-1].headers["authorization"] == (
        f"Bearer {oauth_server.issued[1]}"
    )


def test_short_lived_token_is_fetched_again_for_each_send(
    oauth_server: OAuthServer, make_ctx: MakeContext
) -> None:
    oauth_server.expires_in = 5  # never has the 30 s margin left
    send(oauth_ctx(make_ctx, oauth_server))
    send(oauth_ctx(make_ctx, oauth_server))
    assert len(oauth_server.token_requests) == 2


def test_cache_is_keyed_by_client_secret_and_scope(
    oauth_server: OAuthServer, make_ctx: MakeContext
) -> None:
    send(oauth_ctx(make_ctx, oauth_server))
    send(oauth_ctx(make_ctx, oauth_server, secret="CANARY-rotated"))
    send(oauth_ctx(make_ctx, oauth_server, scope="orders:write"))
    send(oauth_ctx(make_ctx, oauth_server, scope="orders:write"))
    assert len(oauth_server.token_requests) == 3


def test_concurrent_sends_share_one_token_request(
    oauth_server: OAuthServer, make_ctx: MakeContext
) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            send(oauth_ctx(make_ctx, oauth_server))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert len(oauth_server.token_requests) == 1
    assert len(oauth_server.api_requests) == 8


# --- 401 from the API ---


def test_401_from_the_api_refreshes_once_and_retries_with_the_same_key(
    oauth_server: OAuthServer, make_ctx: MakeContext
) -> None:
    send(oauth_ctx(make_ctx, oauth_server))
    oauth_server.revoked.add(oauth_server.issued[0])  # revoked before its expiry

    result = send(oauth_ctx(make_ctx, oauth_server))

    assert result.status_code == 200
    assert len(oauth_server.token_requests) == 2
    first, retry = oauth_server.api_requests[1:]
    assert first.headers["authorization"] == f"Bearer {oauth_server.issued[0]}"
    assert retry.headers["authorization"] == f"Bearer {oauth_server.issued[1]}"
    assert first.headers["idempotency-key"] == retry.headers["idempotency-key"] == KEY
    assert first.body == retry.body
    assert oauth_server.issued[1] not in result.response_excerpt
    assert result.response_excerpt == json.dumps({"ok": True, "echo": f"Bearer {MASK}"})


def test_a_second_401_is_permanent_and_not_retried_again(
    oauth_server: OAuthServer, make_ctx: MakeContext
) -> None:
    oauth_server.api_replies = [Scripted(401, "nope"), Scripted(401, "still nope")]
    with pytest.raises(ConnectorError) as info:
        send(oauth_ctx(make_ctx, oauth_server))
    assert not isinstance(info.value, RetryableConnectorError)
    assert info.value.status_code == 401
    assert info.value.response_excerpt == "still nope"
    assert len(oauth_server.api_requests) == 2
    assert len(oauth_server.token_requests) == 2


def test_other_errors_do_not_refresh_the_token(
    oauth_server: OAuthServer, make_ctx: MakeContext
) -> None:
    oauth_server.api_replies = [Scripted(403, "forbidden")]
    with pytest.raises(ConnectorError) as info:
        send(oauth_ctx(make_ctx, oauth_server))
    assert info.value.status_code == 403
    assert (len(oauth_server.api_requests), len(oauth_server.token_requests)) == (1, 1)


# --- token endpoint failures ---


@pytest.mark.parametrize("status", [400, 401])
def test_bad_client_secret_is_permanent_with_the_oauth_error_code(
    status: int, oauth_server: OAuthServer, make_ctx: MakeContext
) -> None:
    oauth_server.token_replies = [
        Scripted(status, json.dumps({"error": "invalid_client", "error_description": "bad"}))
    ]
    with pytest.raises(ConnectorError) as info:
        send(oauth_ctx(make_ctx, oauth_server, secret="CANARY-wrong"))
    assert not isinstance(info.value, RetryableConnectorError)
    assert "invalid_client" in info.value.message
    assert f"HTTP {status}" in info.value.message
    assert oauth_server.api_requests == []


def test_token_endpoint_503_is_retryable(oauth_server: OAuthServer, make_ctx: MakeContext) -> None:
    oauth_server.token_replies = [Scripted(503, "maintenance", {"Retry-After": "7"})]
    with pytest.raises(RetryableConnectorError) as info:
        send(oauth_ctx(make_ctx, oauth_server))
    assert "HTTP 503" in info.value.message
    assert info.value.retry_after_seconds == 7
    assert oauth_server.api_requests == []
    send(oauth_ctx(make_ctx, oauth_server))  # the failure was not cached
    assert len(oauth_server.token_requests) == 2


def test_token_endpoint_timeout_is_retryable(
    oauth_server: OAuthServer, make_ctx: MakeContext
) -> None:
    oauth_server.token_replies = [Scripted(200, "{}", delay=2)]
    with pytest.raises(RetryableConnectorError) as info:
        send(oauth_ctx(make_ctx, oauth_server, timeout_seconds=0.2))
    assert "token request failed" in info.value.message
    assert oauth_server.api_requests == []


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        json.dumps({"token_type": "bearer"}),
        json.dumps({"access_token": "x", "token_type": "mac"}),
    ],
)
def test_unusable_token_response_is_permanent(
    body: str, oauth_server: OAuthServer, make_ctx: MakeContext
) -> None:
    oauth_server.token_replies = [Scripted(200, body)]
    with pytest.raises(ConnectorError) as info:
        send(oauth_ctx(make_ctx, oauth_server))
    assert not isinstance(info.value, RetryableConnectorError)
    assert oauth_server.api_requests == []


def test_token_request_goes_through_the_egress_guard(
    oauth_server: OAuthServer, make_ctx: MakeContext, default_session: requests.Session
) -> None:
    ctx = make_ctx(
        connection(oauth_server),
        {"path": "/orders"},
        {"client_secret": SECRET},
        http=default_session,
    )
    with pytest.raises(EgressDenied):
        send(ctx)
    assert oauth_server.token_requests == []
    assert oauth_server.api_requests == []


# --- RFC 6749 §2.3.1 client authentication ---


def test_client_secret_basic_request(oauth_server: OAuthServer, make_ctx: MakeContext) -> None:
    send(oauth_ctx(make_ctx, oauth_server, scope="orders:write read", audience="https://api"))
    [request] = oauth_server.token_requests
    pair = f"{quote_plus(CLIENT_ID)}:{quote_plus(SECRET)}".encode()
    assert request.headers["authorization"] == "Basic " + base64.b64encode(pair).decode()
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["accept"] == "application/json"
    assert form(request) == {
        "grant_type": ["client_credentials"],
        "scope": ["orders:write read"],
        "audience": ["https://api"],
    }


def test_client_secret_post_request(oauth_server: OAuthServer, make_ctx: MakeContext) -> None:
    send(oauth_ctx(make_ctx, oauth_server, token_auth_method="client_secret_post"))
    [request] = oauth_server.token_requests
    assert "authorization" not in request.headers
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form(request) == {
        "grant_type": ["client_credentials"],
        "client_id": [CLIENT_ID],
        "client_secret": [SECRET],
    }


# --- secrets never leak ---


def test_secret_and_token_never_appear_in_errors_excerpts_or_logs(
    oauth_server: OAuthServer, make_ctx: MakeContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    # A token endpoint that echoes the (form-encoded and raw) secret in its error.
    oauth_server.token_replies = [
        Scripted(
            400,
            json.dumps(
                {"error": "invalid_client", "error_description": f"{SECRET} {quote_plus(SECRET)}"}
            ),
        )
    ]
    with pytest.raises(ConnectorError) as info:
        send(oauth_ctx(make_ctx, oauth_server, token_auth_method="client_secret_post"))
    texts += [str(info.value), info.value.response_excerpt]
    assert "invalid_client" in info.value.message and MASK in info.value.message
    # A successful send whose API echoes the token.
    texts.append(send(oauth_ctx(make_ctx, oauth_server)).response_excerpt)
    # An API error that echoes the token.
    oauth_server.api_replies = [Scripted(422, f"bad: {oauth_server.issued[-1]}")]
    with pytest.raises(ConnectorError) as info:
        send(oauth_ctx(make_ctx, oauth_server))
    texts += [str(info.value), info.value.response_excerpt]
    # check() too.
    texts.append(HttpDestination().check(oauth_ctx(make_ctx, oauth_server)).message)
    texts.append(caplog.text)

    leaks = [SECRET, quote_plus(SECRET), *oauth_server.issued]
    for text in texts:
        for leak in leaks:
            assert leak not in text
    assert len(oauth_server.issued) == 2


# --- check() ---


def test_check_fetches_a_token_and_reports_its_lifetime(
    oauth_server: OAuthServer, make_ctx: MakeContext
) -> None:
    result = HttpDestination().check(oauth_ctx(make_ctx, oauth_server))
    assert result.ok, result.message
    assert result.message.startswith("token OK, expires in 3600 s; HTTP 200 in ")
    [probe] = oauth_server.api_requests
    assert probe.headers["authorization"] == f"Bearer {oauth_server.issued[0]}"


def test_check_reports_bad_credentials(oauth_server: OAuthServer, make_ctx: MakeContext) -> None:
    oauth_server.token_replies = [Scripted(401, json.dumps({"error": "invalid_client"}))]
    result = HttpDestination().check(oauth_ctx(make_ctx, oauth_server))
    assert not result.ok
    assert "invalid_client" in result.message
    assert oauth_server.api_requests == []


# --- the schema ---


def test_schema_requires_token_url_and_client_id_for_oauth2() -> None:
    schema = SPEC.connection_schema
    Draft202012Validator.check_schema(schema)
    assert "client_secret" in SPEC.secret_fields
    problems = config_problems(schema, {"base_url": "https://api.example.com", "auth": OAUTH2})
    assert problems == [("/client_id", "is required"), ("/token_url", "is required")]
    assert config_problems(schema, {"base_url": "https://api.example.com"}) == []
    good = {
        "base_url": "https://api.example.com",
        "auth": OAUTH2,
        "token_url": "https://auth.example.com/oauth/token",
        "client_id": "abc",
        "scope": "a:read b:write",
        "audience": "https://api.example.com",
        "token_auth_method": "client_secret_post",
    }
    assert config_problems(schema, good) == []
    for name, value in [
        ("token_url", "ftp://auth.example.com"),
        ("token_url", "https://u:p@auth.example.com/token"),
        ("scope", "a  b"),
        ("token_auth_method", "private_key_jwt"),
    ]:
        assert [p for p, _ in config_problems(schema, {**good, name: value})] == [f"/{name}"]


def test_missing_client_secret_is_a_permanent_error(
    oauth_server: OAuthServer, make_ctx: MakeContext
) -> None:
    with pytest.raises(ConnectorError, match="client_secret"):
        send(make_ctx(connection(oauth_server), {"path": "/orders"}, {}))
    assert oauth_server.token_requests == []
