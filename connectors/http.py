"""Generic HTTP destination: POST/PUT/PATCH/DELETE each message as JSON to a fixed host.

The host comes only from the connection's ``base_url``; a step picks the method and a path
under it, and the schema refuses paths that could leave it (``..``, ``//``, absolute URLs).
Every attempt carries the same ``Idempotency-Key`` so a retried delivery has one effect.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping
from typing import Any

import requests
from requests.structures import CaseInsensitiveDict

from connectors.base import (
    CheckResult,
    ConnectorContext,
    ConnectorError,
    ConnectorSpec,
    Destination,
    SendResult,
)
from connectors.httputil import error_for_status, read_excerpt, transport_error
from connectors.redaction import Redactor

# Headers the connector owns: configuring them would bypass the auth settings (and put a
# credential into non-secret config) or break the idempotency contract.
RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "idempotency-key",
        "host",
        "content-length",
        "transfer-encoding",
    }
)
_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_DEFAULT_API_KEY_HEADER = "X-API-Key"
_DEFAULT_TIMEOUT_SECONDS = 10.0
_TOKEN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"  # RFC 9110 header field name


def _case_insensitive(word: str) -> str:
    # JSON Schema regexes have no flags, and the editor evaluates them too (ECMA syntax).
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


_HEADER_NAME = {
    "type": "string",
    "pattern": _TOKEN,
    "not": {
        "pattern": "^(" + "|".join(_case_insensitive(h) for h in sorted(RESERVED_HEADERS)) + ")$"
    },
    # errorMessage: the ajv-errors convention, also honoured by connectors.config.
    "errorMessage": {
        "pattern": "is not a valid header name",
        "not": "is set by the connector and cannot be configured (use the auth settings)",
    },
}
_HEADERS_SCHEMA = {
    "type": "object",
    "propertyNames": _HEADER_NAME,
    "additionalProperties": {
        "type": "string",
        "pattern": r"^[^\r\n\x00]*$",
        "maxLength": 4096,
        "errorMessage": {"pattern": "cannot contain line breaks"},
    },
    "default": {},
}
# Starts with one "/" (so it can never name another host), then no "." or ".." segment and no
# percent-encoded dot, slash or backslash in the path part (urllib3 and servers collapse or
# decode those), and no backslash, whitespace or control character anywhere.
PATH_PATTERN = (
    r"^/(?!/)(?![^?#]*%(?:2[eEfF]|5[cC]))(?!(?:[^?#]*/)?\.{1,2}(?:[/?#]|$))"
    r"[^\s\\\x00-\x1f\x7f]*$"
)
_BASE_URL_PATTERN = r"^https?://[^/?#@\s\\]+(?:/[^?#\s\\]*)?$"

CONNECTION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "HTTP connection",
    "properties": {
        "base_url": {
            "type": "string",
            "title": "Base URL",
            "description": "Where messages go, e.g. https://api.example.com/v1. http or https "
            "only; no user:password@, query string or fragment.",
            "format": "uri",
            "pattern": _BASE_URL_PATTERN,
            "maxLength": 2048,
            "errorMessage": {
                "pattern": "must be an http:// or https:// URL without user:password@, query "
                "string or fragment"
            },
        },
        "headers": {
            **_HEADERS_SCHEMA,
            "title": "Headers",
            "description": "Extra headers sent with every request. Not secret: use the auth "
            "settings for credentials.",
        },
        "auth": {
            "type": "string",
            "title": "Authentication",
            "description": "basic: username + password; bearer: token; api_key: the key in "
            "the header named below.",
            "enum": ["none", "basic", "bearer", "api_key"],
            "default": "none",
        },
        "username": {
            "type": "string",
            "title": "Username",
            "description": "For basic authentication.",
            "pattern": "^[^:\r\n]*$",
            "maxLength": 256,
        },
        "api_key_header": {
            "type": "string",
            "title": "API key header",
            "description": "Header that carries the API key (api_key authentication).",
            "default": _DEFAULT_API_KEY_HEADER,
            **_HEADER_NAME,
        },
        "timeout_seconds": {
            "type": "number",
            "title": "Timeout (seconds)",
            "description": "Connect and read timeout for each request.",
            "default": _DEFAULT_TIMEOUT_SECONDS,
            "minimum": 0.1,
            "maximum": 120,
        },
    },
    "required": ["base_url"],
    "additionalProperties": False,
    "allOf": [
        {
            "if": {"properties": {"auth": {"const": "basic"}}, "required": ["auth"]},
            "then": {"required": ["username"]},
        }
    ],
}

STEP_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "HTTP request",
    "properties": {
        "method": {
            "type": "string",
            "title": "Method",
            "description": "HTTP method of the request.",
            "enum": list(_METHODS),
            "default": "POST",
        },
        "path": {
            "type": "string",
            "title": "Path",
            "description": "Appended to the connection's base URL, e.g. /orders. Must start "
            "with / and cannot contain .. segments or change the host.",
            "default": "/",
            "pattern": PATH_PATTERN,
            "maxLength": 2048,
            "errorMessage": {
                "pattern": "must start with / and cannot contain . or .. segments, //, "
                "encoded dots or slashes, backslashes, spaces or control characters"
            },
        },
        "headers": {
            **_HEADERS_SCHEMA,
            "title": "Headers",
            "description": "Extra headers for this step; they override the connection's.",
        },
    },
    "additionalProperties": False,
}

SPEC = ConnectorSpec(
    key="http",
    name="HTTP request",
    kind="destination",
    version=1,
    description="Send each message as a JSON request to an HTTP API, with an Idempotency-Key.",
    connection_schema=CONNECTION_SCHEMA,
    secret_fields=("password", "token", "api_key"),
    step_schema=STEP_SCHEMA,
    requires_connection=True,
    idempotency="key",
)

_AUTH_SECRET = {"basic": "password", "bearer": "token", "api_key": "api_key"}


class HttpDestination(Destination):
    """Delivers one message per request; see the module docstring for the rules."""

    spec = SPEC

    def send(self, ctx: ConnectorContext, message: Any, *, idempotency_key: str) -> SendResult:
        """POST (or PUT/PATCH/DELETE) ``message`` as JSON and classify the answer."""
        config = ctx.connection_config
        redact, auth_headers = _auth(config, ctx.secrets)
        step = ctx.step_config
        method = str(step.get("method", "POST"))
        if method not in _METHODS:
            raise ConnectorError(f"method {method!r} is not one of {', '.join(_METHODS)}")
        url = _join_url(_base_url(config), str(step.get("path", "/")))
        headers = _request_headers(config, step, auth_headers)
        headers["Idempotency-Key"] = idempotency_key
        timeout = _timeout(ctx)

        started = time.monotonic()
        try:
            response = ctx.http.request(
                method,
                url,
                data=_encode(message),
                headers=headers,
                timeout=(timeout, timeout),
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException as exc:
            raise transport_error(exc, redact, url=url, timeout=timeout) from exc
        try:
            excerpt = read_excerpt(response, redact)
        finally:
            response.close()
        elapsed_ms = round((time.monotonic() - started) * 1000)
        ctx.logger.info(
            "connector.http.sent method=%s status=%s elapsed_ms=%d",
            method,
            response.status_code,
            elapsed_ms,
        )
        error = error_for_status(response.status_code, response.headers, excerpt, redact)
        if error is not None:
            raise error
        return SendResult(status_code=response.status_code, response_excerpt=excerpt)

    def check(self, ctx: ConnectorContext) -> CheckResult:
        """GET the base URL; any answer below 500 means the API is reachable."""
        config = ctx.connection_config
        try:
            base_url = _base_url(config)
            redact, auth_headers = _auth(config, ctx.secrets)
            headers = _request_headers(config, {}, auth_headers)
        except ConnectorError as exc:
            return CheckResult(ok=False, message=exc.message)
        headers.pop("Content-Type", None)  # a GET has no body
        timeout = _timeout(ctx)
        started = time.monotonic()
        try:
            response = ctx.http.get(
                base_url,
                headers=headers,
                timeout=(timeout, timeout),
                allow_redirects=False,
                stream=True,
            )
        except ConnectorError as exc:  # EgressDenied
            return CheckResult(ok=False, message=exc.message)
        except requests.RequestException as exc:
            error = transport_error(exc, redact, url=base_url, timeout=timeout)
            return CheckResult(ok=False, message=error.message)
        response.close()
        elapsed_ms = round((time.monotonic() - started) * 1000)
        if response.status_code >= 500:
            return CheckResult(
                ok=False,
                message=f"HTTP {response.status_code} in {elapsed_ms} ms: the server reported "
                "an error",
            )
        return CheckResult(ok=True, message=f"HTTP {response.status_code} in {elapsed_ms} ms")


def _timeout(ctx: ConnectorContext) -> float:
    return float(ctx.connection_config.get("timeout_seconds", ctx.timeout_seconds))


def _base_url(config: Mapping[str, Any]) -> str:
    base_url = config.get("base_url")
    if not isinstance(base_url, str) or not re.search(_BASE_URL_PATTERN, base_url):
        raise ConnectorError("the connection's base_url is missing or not an http(s) URL")
    return base_url


def _join_url(base_url: str, path: str) -> str:
    # Re-checked here because stored configs may predate a schema fix.
    if not re.search(PATH_PATTERN, path):
        raise ConnectorError(f"step path {path!r} is not a safe path under the base URL")
    return base_url.rstrip("/") + path


def _encode(message: Any) -> bytes:
    try:
        return json.dumps(message, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ConnectorError(f"message cannot be sent as JSON: {exc}") from None


def _auth(config: Mapping[str, Any], secrets: Mapping[str, str]) -> tuple[Redactor, dict[str, str]]:
    """The auth header for the configured type, and a redactor for every secret involved."""
    redact = Redactor(secrets.values())
    auth = config.get("auth", "none")
    if auth == "none":
        return redact, {}
    field = _AUTH_SECRET.get(auth)
    if field is None:
        raise ConnectorError(f"unknown auth type {auth!r}")
    secret = secrets.get(field)
    if not secret:
        raise ConnectorError(f"auth is {auth!r} but no {field} is stored for this connection")
    if any(c in secret for c in "\r\n\x00"):
        # Checked here because requests would quote the value in its error message.
        raise ConnectorError(f"the stored {field} contains a line break or NUL character")
    if auth == "basic":
        pair = f"{config.get('username', '')}:{secret}".encode()
        credential = base64.b64encode(pair).decode("ascii")
        # A server echoing our Authorization header must not leak the (decodable) pair.
        return redact.with_values([credential]), {"Authorization": f"Basic {credential}"}
    if auth == "bearer":
        return redact, {"Authorization": f"Bearer {secret}"}
    header = str(config.get("api_key_header") or _DEFAULT_API_KEY_HEADER)
    return redact, {header: secret}


def _request_headers(
    config: Mapping[str, Any], step: Mapping[str, Any], auth_headers: Mapping[str, str]
) -> CaseInsensitiveDict[str]:
    """Content-Type, then connection headers, then step headers; auth always wins."""
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict({"Content-Type": "application/json"})
    protected = RESERVED_HEADERS | {name.lower() for name in auth_headers}
    for source in (config.get("headers") or {}, step.get("headers") or {}):
        for name, value in source.items():
            if name.lower() in protected:
                raise ConnectorError(
                    f"header {name!r} is set by the connector and cannot be configured"
                )
            headers[name] = value
    headers.update(auth_headers)
    return headers


CONNECTOR = HttpDestination
