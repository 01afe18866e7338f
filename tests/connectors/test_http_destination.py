"""HttpDestination against a real local server: request shape, outcome classes, redaction."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import pytest
import requests
from jsonschema import Draft202012Validator

from connectors.base import ConnectorContext, ConnectorError, RetryableConnectorError
from connectors.config import config_problems
from connectors.egress import EgressDenied
from connectors.http import SPEC, HttpDestination
from connectors.httputil import EXCERPT_CHARS, parse_retry_after
from connectors.redaction import MASK

if TYPE_CHECKING:
    from conftest import FakeServer

MakeContext = Callable[..., ConnectorContext]
KEY = "run-41:dest-7"
TOKEN = "tok-CANARY-9f8e7d6c"


def send(ctx: ConnectorContext, message: Any = None) -> Any:
    return HttpDestination().send(ctx, message or {"order": 1}, idempotency_key=KEY)


def test_sends_exact_json_body_with_idempotency_key(
    fake_server: FakeServer, make_ctx: MakeContext
) -> None:
    fake_server.reply(201, '{"id": "abc"}')
    message = {"customer": "Zoë Ünlü", "total": 12.5, "items": [{"sku": "€-1"}]}
    ctx = make_ctx({"base_url": f"{fake_server.url}/v1/"}, {"path": "/orders"})

    result = send(ctx, message)

    assert (result.status_code, result.response_excerpt) == (201, '{"id": "abc"}')
    [request] = fake_server.requests
    assert (request.method, request.path) == ("POST", "/v1/orders")
    # The compact form, UTF-8 (no \u escapes): what every JSON parser reads, fewest bytes.
    assert request.body == '{"customer":"Zoë Ünlü","total":12.5,"items":[{"sku":"€-1"}]}'.encode()
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == KEY
    assert "authorization" not in request.headers


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_uses_the_step_method(method: str, fake_server: FakeServer, make_ctx: MakeContext) -> None:
    send(make_ctx({"base_url": fake_server.url}, {"method": method, "path": "/x"}))
    assert fake_server.requests[0].method == method


@pytest.mark.parametrize(
    ("connection", "secrets", "header", "expected"),
    [
        (
            {"auth": "basic", "username": "alice"},
            {"password": "s3cret:pw"},
            "authorization",
            "Basic " + base64.b64encode(b"alice:s3cret:pw").decode(),
        ),
        ({"auth": "bearer"}, {"token": TOKEN}, "authorization", f"Bearer {TOKEN}"),
        ({"auth": "api_key"}, {"api_key": "k-123"}, "x-api-key", "k-123"),
        (
            {"auth": "api_key", "api_key_header": "X-Shop-Key"},
            {"api_key": "k-123"},
            "x-shop-key",
            "k-123",
        ),
    ],
)
def test_sends_the_auth_header_for_each_auth_type(
    connection: dict[str, Any],
    secrets: dict[str, str],
    header: str,
    expected: str,
    fake_server: FakeServer,
    make_ctx: MakeContext,
) -> None:
    send(make_ctx({"base_url": fake_server.url, **connection}, secrets=secrets))
    assert fake_server.requests[0].headers[header] == expected


def test_step_headers_override_connection_headers(
    fake_server: FakeServer, make_ctx: MakeContext
) -> None:
    connection = {"base_url": fake_server.url, "headers": {"X-Tenant": "a", "X-Source": "fg"}}
    send(make_ctx(connection, {"headers": {"x-tenant": "b"}}))
    headers = fake_server.requests[0].headers
    assert (headers["x-tenant"], headers["x-source"]) == ("b", "fg")


@pytest.mark.parametrize("header", ["Idempotency-Key", "authorization", "X-API-Key"])
def test_step_headers_cannot_replace_connector_headers(
    header: str, fake_server: FakeServer, make_ctx: MakeContext
) -> None:
    connection = {"base_url": fake_server.url, "auth": "api_key"}
    ctx = make_ctx(connection, {"headers": {header: "forged"}}, {"api_key": "k"})
    with pytest.raises(ConnectorError, match="set by the connector"):
        send(ctx)
    assert fake_server.requests == []


def test_missing_secret_is_a_permanent_error(
    fake_server: FakeServer, make_ctx: MakeContext
) -> None:
    with pytest.raises(ConnectorError, match="no token") as info:
        send(make_ctx({"base_url": fake_server.url, "auth": "bearer"}))
    assert not info.value.retryable
    assert fake_server.requests == []


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_success(status: int, fake_server: FakeServer, make_ctx: MakeContext) -> None:
    fake_server.reply(status)
    assert send(make_ctx({"base_url": fake_server.url})).status_code == status


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retryable(
    status: int, fake_server: FakeServer, make_ctx: MakeContext
) -> None:
    fake_server.reply(status, "busy")
    with pytest.raises(RetryableConnectorError) as info:
        send(make_ctx({"base_url": fake_server.url}))
    assert (info.value.status_code, info.value.response_excerpt) == (status, "busy")


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_honoured(
    status: int, fake_server: FakeServer, make_ctx: MakeContext
) -> None:
    fake_server.reply(status, headers={"Retry-After": "120"})
    with pytest.raises(RetryableConnectorError) as info:
        send(make_ctx({"base_url": fake_server.url}))
    assert info.value.retry_after_seconds == 120


def test_retry_after_http_date_is_honoured(fake_server: FakeServer, make_ctx: MakeContext) -> None:
    later = datetime.fromtimestamp(time.time() + 90, UTC)
    fake_server.reply(429, headers={"Retry-After": format_datetime(later, usegmt=True)})
    with pytest.raises(RetryableConnectorError) as info:
        send(make_ctx({"base_url": fake_server.url}))
    assert 85 <= (info.value.retry_after_seconds or 0) <= 90


def test_parse_retry_after_edge_cases() -> None:
    now = datetime(2015, 10, 21, 7, 26, tzinfo=UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now=now) == 0
    assert parse_retry_after(" 5 ") == 5
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-1") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_other_4xx_are_permanent(
    status: int, fake_server: FakeServer, make_ctx: MakeContext
) -> None:
    fake_server.reply(status, "nope")
    with pytest.raises(ConnectorError) as info:
        send(make_ctx({"base_url": fake_server.url}))
    assert not info.value.retryable
    assert (info.value.status_code, info.value.response_excerpt) == (status, "nope")


def test_redirect_is_permanent_and_not_followed(
    fake_server: FakeServer, make_ctx: MakeContext
) -> None:
    fake_server.reply(301, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    with pytest.raises(ConnectorError, match="redirects are not followed") as info:
        send(make_ctx({"base_url": fake_server.url}))
    assert not info.value.retryable
    assert info.value.status_code == 301
    assert len(fake_server.requests) == 1


def test_timeout_is_retryable(fake_server: FakeServer, make_ctx: MakeContext) -> None:
    fake_server.reply(200, delay=2)
    started = time.monotonic()
    with pytest.raises(RetryableConnectorError, match=r"no response from .* within 0\.2 s"):
        send(make_ctx({"base_url": fake_server.url, "timeout_seconds": 0.2}))
    assert time.monotonic() - started < 1.5


def test_connection_refused_is_retryable(closed_port: int, make_ctx: MakeContext) -> None:
    with pytest.raises(RetryableConnectorError, match="could not connect"):
        send(make_ctx({"base_url": f"http://127.0.0.1:{closed_port}"}))


def test_certificate_failure_is_permanent(
    tls_server: FakeServer, make_ctx: MakeContext, loopback_session: requests.Session
) -> None:
    # The certificate names "localhost", not 127.0.0.1: retrying cannot fix that.
    loopback_session.verify = True
    with pytest.raises(ConnectorError, match="TLS handshake") as info:
        send(make_ctx({"base_url": tls_server.url}))
    assert not info.value.retryable
    assert tls_server.requests == []


def test_egress_denied_is_permanent_and_nothing_is_sent(
    fake_server: FakeServer, make_ctx: MakeContext, default_session: requests.Session
) -> None:
    with pytest.raises(EgressDenied) as info:
        send(make_ctx({"base_url": fake_server.url}, http=default_session))
    assert not info.value.retryable
    assert fake_server.requests == []


def test_excerpt_is_truncated(fake_server: FakeServer, make_ctx: MakeContext) -> None:
    fake_server.reply(200, "é" * 5000)
    excerpt = send(make_ctx({"base_url": fake_server.url})).response_excerpt
    assert excerpt == "é" * EXCERPT_CHARS


def test_secrets_echoed_by_the_destination_are_redacted(
    fake_server: FakeServer, make_ctx: MakeContext
) -> None:
    fake_server.reply(200, f'{{"echo": "Bearer {TOKEN}", "again": "{TOKEN}"}}')
    ctx = make_ctx({"base_url": fake_server.url, "auth": "bearer"}, secrets={"token": TOKEN})
    excerpt = send(ctx).response_excerpt
    assert TOKEN not in excerpt
    assert excerpt == f'{{"echo": "Bearer {MASK}", "again": "{MASK}"}}'


def test_echoed_basic_credential_is_redacted_in_errors(
    fake_server: FakeServer, make_ctx: MakeContext
) -> None:
    credential = base64.b64encode(b"alice:hunter2").decode()
    fake_server.reply(401, f"bad credentials: Basic {credential} (hunter2)")
    ctx = make_ctx(
        {"base_url": fake_server.url, "auth": "basic", "username": "alice"},
        secrets={"password": "hunter2"},
    )
    with pytest.raises(ConnectorError) as info:
        send(ctx)
    text = f"{info.value} {info.value.response_excerpt}"
    assert "hunter2" not in text
    assert credential not in text


def test_secret_straddling_the_excerpt_cut_is_fully_masked(
    fake_server: FakeServer, make_ctx: MakeContext
) -> None:
    fake_server.reply(200, "x" * (EXCERPT_CHARS - 5) + TOKEN)
    ctx = make_ctx({"base_url": fake_server.url, "auth": "bearer"}, secrets={"token": TOKEN})
    excerpt = send(ctx).response_excerpt
    assert excerpt == "x" * (EXCERPT_CHARS - 5) + MASK[:5]


@pytest.mark.parametrize(
    "path", ["/../admin", "/a/../../b", "//evil.example/x", "http://evil.example/", "/%2e%2e/x"]
)
def test_step_path_that_could_escape_is_refused(
    path: str, fake_server: FakeServer, make_ctx: MakeContext
) -> None:
    assert [p for p, _ in config_problems(SPEC.step_schema, {"path": path})] == ["/path"]
    with pytest.raises(ConnectorError, match="not a safe path"):
        send(make_ctx({"base_url": fake_server.url}, {"path": path}))
    assert fake_server.requests == []


@pytest.mark.parametrize(
    ("connection", "step"),
    [
        ({}, {}),
        ({"base_url": "file:///etc/passwd"}, {}),
        ({"base_url": "http://127.0.0.1:9"}, {"method": "GET"}),
    ],
)
def test_stale_or_broken_config_is_a_permanent_error(
    connection: dict[str, Any], step: dict[str, Any], make_ctx: MakeContext, connect_log: list[Any]
) -> None:
    with pytest.raises(ConnectorError) as info:
        send(make_ctx(connection, step))
    assert not info.value.retryable
    assert connect_log == []


def test_message_that_is_not_json_is_a_permanent_error(
    fake_server: FakeServer, make_ctx: MakeContext
) -> None:
    with pytest.raises(ConnectorError, match="JSON"):
        send(make_ctx({"base_url": fake_server.url}), {"when": datetime.now(UTC)})
    assert fake_server.requests == []


# --- check() ---


def test_check_reports_status_and_time(fake_server: FakeServer, make_ctx: MakeContext) -> None:
    result = HttpDestination().check(make_ctx({"base_url": fake_server.url}))
    assert result.ok
    assert result.message.startswith("HTTP 200 in ") and result.message.endswith(" ms")
    [request] = fake_server.requests
    assert request.method == "GET"
    assert "content-type" not in request.headers


def test_check_accepts_client_errors_as_reachable(
    fake_server: FakeServer, make_ctx: MakeContext
) -> None:
    fake_server.reply(404)
    assert HttpDestination().check(make_ctx({"base_url": fake_server.url})).ok


def test_check_fails_on_server_errors(fake_server: FakeServer, make_ctx: MakeContext) -> None:
    fake_server.reply(503)
    result = HttpDestination().check(make_ctx({"base_url": fake_server.url}))
    assert not result.ok
    assert "HTTP 503" in result.message


def test_check_fails_on_timeout(fake_server: FakeServer, make_ctx: MakeContext) -> None:
    fake_server.reply(200, delay=2)
    ctx = make_ctx({"base_url": fake_server.url, "timeout_seconds": 0.2})
    result = HttpDestination().check(ctx)
    assert not result.ok
    assert "within 0.2 s" in result.message


def test_check_fails_on_refused_connection(closed_port: int, make_ctx: MakeContext) -> None:
    result = HttpDestination().check(make_ctx({"base_url": f"http://127.0.0.1:{closed_port}"}))
    assert not result.ok
    assert "could not connect" in result.message


def test_check_fails_on_egress_denial(
    fake_server: FakeServer, make_ctx: MakeContext, default_session: requests.Session
) -> None:
    result = HttpDestination().check(make_ctx({"base_url": fake_server.url}, http=default_session))
    assert not result.ok
    assert "FLOWGATE_EGRESS_ALLOW" in result.message
    assert fake_server.requests == []


# --- the spec itself ---


def test_spec_schemas_are_valid_and_describe_every_field() -> None:
    for schema in (SPEC.connection_schema, SPEC.step_schema):
        Draft202012Validator.check_schema(schema)
        assert schema["additionalProperties"] is False
        for name, prop in schema["properties"].items():
            assert prop.get("title") and prop.get("description"), name
    assert SPEC.secret_fields == ("password", "token", "api_key", "client_secret")
    assert (SPEC.key, SPEC.kind, SPEC.idempotency) == ("http", "destination", "key")


def test_connection_schema_rejects_urls_that_hide_credentials_or_change_scheme() -> None:
    for url in ["ftp://x.example", "http://user:pw@x.example", "x.example", "http://x?q=1"]:
        problems = config_problems(SPEC.connection_schema, {"base_url": url})
        assert [p for p, _ in problems] == ["/base_url"], url
    assert config_problems(SPEC.connection_schema, {"base_url": "https://api.example.com/v1"}) == []


def test_check_reports_a_redirect_and_where_it_points(
    fake_server: FakeServer, make_ctx: MakeContext
) -> None:
    # Deliveries never follow redirects, so a base URL that redirects is not "OK".
    fake_server.reply(308, headers={"Location": f"{fake_server.url}/api/"})
    result = HttpDestination().check(make_ctx({"base_url": f"{fake_server.url}/api"}))
    assert not result.ok
    assert result.message.startswith("HTTP 308 in ")
    assert f"redirects to {fake_server.url}/api/" in result.message
    assert "use the final address as the base URL" in result.message
    assert len(fake_server.requests) == 1
