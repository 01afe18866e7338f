"""Generic HTTP destination: POST/PUT/PATCH/DELETE each message as JSON to a fixed host.

The host comes only from the connection's ``base_url``; a step picks the method and a path
under it, and the schema refuses paths that could leave it (``..``, ``//``, absolute URLs).
Every attempt carries the same ``Idempotency-Key`` so a retried delivery has one effect.

``timeout_seconds`` bounds the connect and each read. A destination that answers one byte
every few seconds never trips a per-read timeout, so each delivery attempt also has a total
deadline of 2 × ``timeout_seconds`` + 2 s (``attempt_deadline``: a connect and a wait for the
answer, each up to the timeout, plus 2 s to transfer it). An attempt still running then is
cut off (its connection closed, never reused) and fails like a read timeout: retryable and
ambiguous, so it is retried with the same key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote_plus, urlencode

import requests
import urllib3
from requests.structures import CaseInsensitiveDict
from urllib3 import PoolManager

from connectors import json_codec
from connectors.base import (
    CheckResult,
    ConnectorContext,
    ConnectorError,
    ConnectorSpec,
    Destination,
    RetryableConnectorError,
    SendResult,
)
from connectors.deadline import WATCHDOG
from connectors.egress import EgressDenied, plain_http_pool
from connectors.httputil import (
    as_requests_error,
    attempt_deadline,
    bounded_request,
    deadline_exceeded,
    error_for_status,
    parse_retry_after,
    read_excerpt,
    read_raw_excerpt,
    transport_error,
)
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
# RFC 6749 §3.2: a token endpoint may carry a query component, never a fragment.
_TOKEN_URL_PATTERN = r"^https?://[^/?#@\s\\]+(?:/[^?#\s\\]*)?(?:\?[^#\s\\]*)?$"
_SCOPE_TOKEN = r"[\x21\x23-\x5B\x5D-\x7E]+"  # RFC 6749 §3.3 scope-token
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
OAUTH2 = "oauth2_client_credentials"
_TOKEN_AUTH_METHODS = ("client_secret_basic", "client_secret_post")

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
            "the header named below; oauth2_client_credentials: a token fetched from the token "
            "URL with the client ID and client secret.",
            "enum": ["none", "basic", "bearer", "api_key", OAUTH2],
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
        "token_url": {
            "type": "string",
            "title": "Token URL",
            "description": "OAuth2 token endpoint, e.g. https://auth.example.com/oauth/token "
            "(oauth2_client_credentials authentication). http or https only.",
            "format": "uri",
            "pattern": _TOKEN_URL_PATTERN,
            "maxLength": 2048,
            "errorMessage": {
                "pattern": "must be an http:// or https:// URL without user:password@ or fragment"
            },
        },
        "client_id": {
            "type": "string",
            "title": "Client ID",
            "description": "OAuth2 client identifier (oauth2_client_credentials).",
            "minLength": 1,
            "maxLength": 512,
            "pattern": _NO_CONTROL,
        },
        "scope": {
            "type": "string",
            "title": "Scope",
            "description": "Optional space-separated OAuth2 scopes to request.",
            "pattern": f"^{_SCOPE_TOKEN}( {_SCOPE_TOKEN})*$",
            "maxLength": 1024,
            "errorMessage": {"pattern": "must be scope names separated by single spaces"},
        },
        "audience": {
            "type": "string",
            "title": "Audience",
            "description": "Optional audience parameter some providers (e.g. Auth0) require.",
            "pattern": _NO_CONTROL,
            "maxLength": 1024,
        },
        "token_auth_method": {
            "type": "string",
            "title": "Client authentication",
            "description": "How the client authenticates to the token endpoint (RFC 6749 "
            "§2.3.1): client_secret_basic sends an Authorization: Basic header, "
            "client_secret_post sends client_id and client_secret in the form body. "
            "Default: client_secret_basic.",
            # No schema default: client_secret_basic is applied in code, so stored configs of
            # the other auth types stay as they were (connectors.config.apply_defaults).
            "enum": list(_TOKEN_AUTH_METHODS),
        },
        "timeout_seconds": {
            "type": "number",
            "title": "Timeout (seconds)",
            "description": "Connect and read timeout for each request (token requests too). "
            "A delivery attempt is also cut off after 2 × this + 2 s in total.",
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
        },
        {
            "if": {"properties": {"auth": {"const": OAUTH2}}, "required": ["auth"]},
            "then": {"required": ["token_url", "client_id"]},
        },
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
    secret_fields=("password", "token", "api_key", "client_secret"),
    step_schema=STEP_SCHEMA,
    requires_connection=True,
    idempotency="key",
)

_AUTH_SECRET = {"basic": "password", "bearer": "token", "api_key": "api_key"}


class HttpDestination(Destination):
    """Delivers one message per request; see the module docstring for the rules."""

    spec = SPEC

    def send(self, ctx: ConnectorContext, message: Any, *, idempotency_key: str) -> SendResult:
        """POST (or PUT/PATCH/DELETE) ``message`` as JSON and classify the answer.

        With OAuth2 a 401 means the cached token may have been revoked early: the delivery
        is retried once with a freshly fetched token and the same idempotency key.
        """
        config = ctx.connection_config
        step = ctx.step_config
        method = str(step.get("method", "POST"))
        if method not in _METHODS:
            raise ConnectorError(f"method {method!r} is not one of {', '.join(_METHODS)}")
        url = _join_url(_base_url(config), str(step.get("path", "/")))
        body = _encode(message)
        timeout = _timeout(ctx)
        oauth = _oauth_client(config, ctx.secrets)
        if oauth is None:
            redact, auth_headers = _auth(config, ctx.secrets)
        else:
            redact, auth_headers = oauth.auth(ctx, timeout)
        headers = _request_headers(config, step, auth_headers)
        headers["Idempotency-Key"] = idempotency_key

        status, response_headers, excerpt = _deliver(ctx, method, url, body, headers, redact)
        if status == 401 and oauth is not None:
            ctx.logger.info("connector.http.token_rejected status=401 retrying=1")
            rejected = auth_headers["Authorization"].removeprefix("Bearer ")
            redact, auth_headers = oauth.auth(ctx, timeout, rejected=rejected)
            redact = redact.with_values([rejected])
            headers.update(auth_headers)
            status, response_headers, excerpt = _deliver(ctx, method, url, body, headers, redact)
        error = error_for_status(status, response_headers, excerpt, redact)
        if error is not None:
            raise error
        return SendResult(status_code=status, response_excerpt=excerpt)

    def check(self, ctx: ConnectorContext) -> CheckResult:
        """GET the base URL; any answer below 500 means the API is reachable.

        With OAuth2 a fresh token is fetched first, which proves the client credentials.
        """
        config = ctx.connection_config
        timeout = _timeout(ctx)
        prefix = ""
        try:
            base_url = _base_url(config)
            oauth = _oauth_client(config, ctx.secrets)
            if oauth is None:
                redact, auth_headers = _auth(config, ctx.secrets)
            else:
                redact, auth_headers = oauth.auth(ctx, timeout, force=True)
                prefix = f"token OK, expires in {oauth.expires_in(auth_headers)} s; "
            headers = _request_headers(config, {}, auth_headers)
        except ConnectorError as exc:  # includes EgressDenied on the token request
            return CheckResult(ok=False, message=exc.message)
        headers.pop("Content-Type", None)  # a GET has no body
        started = time.monotonic()
        try:  # bounded: "Test connection" must not hold a web thread
            with bounded_request(
                ctx.http, "GET", base_url, timeout=timeout, redact=redact, headers=headers
            ) as response:
                pass  # the status is the answer; the body is never read
        except ConnectorError as exc:  # EgressDenied, transport errors, the deadline
            return CheckResult(ok=False, message=prefix + exc.message)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        if response.status_code >= 500:
            return CheckResult(
                ok=False,
                message=f"{prefix}HTTP {response.status_code} in {elapsed_ms} ms: the server "
                "reported an error",
            )
        if 300 <= response.status_code < 400:
            # Reachable, but deliveries never follow redirects: say where it points so a
            # base URL that is one slash (or one host) off gets fixed before the first send.
            location = redact(response.headers.get("Location", "") or "")[:200]
            return CheckResult(
                ok=False,
                message=f"{prefix}HTTP {response.status_code} in {elapsed_ms} ms: the base URL "
                f"redirects to {location or 'another address'}; deliveries do not follow "
                "redirects, so use the final address as the base URL",
            )
        return CheckResult(
            ok=True, message=f"{prefix}HTTP {response.status_code} in {elapsed_ms} ms"
        )


def _deliver(
    ctx: ConnectorContext,
    method: str,
    url: str,
    body: bytes,
    headers: CaseInsensitiveDict[str],
    redact: Redactor,
) -> tuple[int, CaseInsensitiveDict[str], str]:
    """One attempt, cut off at ``attempt_deadline``: the status, headers and redacted
    excerpt of the answer."""
    timeout = _timeout(ctx)
    started = time.monotonic()
    pool = plain_http_pool(ctx.http, url)
    if pool is not None:
        status, response_headers, excerpt = _send_direct(
            pool, ctx.http.headers, method, url, body, headers, redact, timeout
        )
    else:
        status, response_headers, excerpt = _send_with_requests(
            ctx, method, url, body, headers, redact, timeout
        )
    elapsed_ms = round((time.monotonic() - started) * 1000)
    ctx.logger.info(
        "connector.http.sent method=%s status=%s elapsed_ms=%d", method, status, elapsed_ms
    )
    return status, response_headers, excerpt


def _send_direct(
    pool: PoolManager,
    defaults: Mapping[str, str],
    method: str,
    url: str,
    body: bytes,
    headers: CaseInsensitiveDict[str],
    redact: Redactor,
    timeout: float,
) -> tuple[int, CaseInsensitiveDict[str], str]:
    """Plain http:// through the session's guarded urllib3 pool, without requests' per-call
    preparation (about 0.6 ms of CPU a delivery, bench/README.md). Same headers (the
    session's defaults, then ours), no redirects, no retries, same timeouts and errors."""
    merged = CaseInsensitiveDict(defaults)
    merged.update(headers)
    deadline = attempt_deadline(timeout)  # as in httputil.bounded_request, for the pool
    with WATCHDOG.arm(deadline) as alarm:
        try:
            response = pool.urlopen(
                method,
                url,
                body=body,
                headers=dict(merged),
                retries=False,
                redirect=False,
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                preload_content=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            if alarm.disarm():  # urllib3 has dropped the failed connection already
                raise deadline_exceeded(url, deadline) from None
            raise transport_error(as_requests_error(exc), redact, url=url, timeout=timeout) from exc
        complete = False
        try:
            excerpt, complete = read_raw_excerpt(response, redact)
        finally:
            # Disarmed before the release: a connection back in the pool may already be
            # another attempt's, and one the watchdog cut must not get there.
            interrupted = alarm.disarm()
            if interrupted or not complete:
                response.close()  # a body left unread or a cut connection: never reused
            response.release_conn()
    if interrupted:
        raise deadline_exceeded(url, deadline)
    return response.status, CaseInsensitiveDict(response.headers), excerpt


def _send_with_requests(
    ctx: ConnectorContext,
    method: str,
    url: str,
    body: bytes,
    headers: CaseInsensitiveDict[str],
    redact: Redactor,
    timeout: float,
) -> tuple[int, CaseInsensitiveDict[str], str]:
    """https:// (and any session without a guarded plain-http pool) through requests."""
    with bounded_request(
        ctx.http, method, url, timeout=timeout, redact=redact, data=body, headers=headers
    ) as response:
        excerpt = read_excerpt(response, redact)
    return response.status_code, response.headers, excerpt


# --- OAuth2 client credentials (RFC 6749 §4.4) ---

# Refresh a cached token when less than this is left, so it cannot expire mid-request.
TOKEN_REFRESH_MARGIN_SECONDS = 30.0
# Lifetime assumed when the token endpoint omits expires_in (RFC 6749 §5.1: RECOMMENDED).
_DEFAULT_EXPIRES_IN = 300.0
_OAUTH_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5B\x5D-\x7E]{1,64}")  # RFC 6749 §5.2
_RETRYABLE_TOKEN_STATUSES = frozenset({408, 425, 429})
_clock = time.monotonic  # tests replace this to move time forward

# cache key -> (access_token, expires_at on _clock). The key hashes the client secret, so
# neither the secret nor a token is ever recoverable from a key.
_token_cache: dict[str, tuple[str, float]] = {}
_token_cache_lock = threading.Lock()
_fetch_locks: dict[str, threading.Lock] = {}


def clear_token_cache() -> None:
    """Forget every cached token (tests; a rotated secret already gets a new cache key)."""
    with _token_cache_lock:
        _token_cache.clear()
        _fetch_locks.clear()


def _fetch_lock(key: str) -> threading.Lock:
    with _token_cache_lock:
        return _fetch_locks.setdefault(key, threading.Lock())


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _OAuthClient:
    """One connection's client-credentials settings, and its tokens via the shared cache."""

    def __init__(self, config: Mapping[str, Any], secret: str, redact: Redactor) -> None:
        self.token_url = str(config.get("token_url") or "")
        self.client_id = str(config.get("client_id") or "")
        self.scope = str(config.get("scope") or "")
        self.audience = str(config.get("audience") or "")
        self.method = str(config.get("token_auth_method") or "client_secret_basic")
        self.secret = secret
        pair = f"{quote_plus(self.client_id)}:{quote_plus(secret)}".encode()
        self.basic = base64.b64encode(pair).decode("ascii")
        # quote_plus: how the secret appears in a form body a server might echo back.
        self.redact = redact.with_values([secret, quote_plus(secret), self.basic])
        self.key = _sha256(
            json.dumps([self.token_url, self.client_id, self.scope, self.audience, _sha256(secret)])
        )

    def auth(
        self,
        ctx: ConnectorContext,
        timeout: float,
        *,
        rejected: str | None = None,
        force: bool = False,
    ) -> tuple[Redactor, dict[str, str]]:
        """A redactor that also masks the token, and the ``Authorization: Bearer`` header."""
        token = self.token(ctx, timeout, rejected=rejected, force=force)
        return self.redact.with_values([token]), {"Authorization": f"Bearer {token}"}

    def expires_in(self, auth_headers: Mapping[str, str]) -> int:
        token = auth_headers["Authorization"].removeprefix("Bearer ")
        with _token_cache_lock:
            cached = _token_cache.get(self.key)
        if cached is None or cached[0] != token:
            return 0
        return max(0, round(cached[1] - _clock()))

    def token(
        self, ctx: ConnectorContext, timeout: float, *, rejected: str | None, force: bool
    ) -> str:
        """A cached token with at least the refresh margin left, else a freshly fetched one.

        ``rejected`` is a token the API just refused: it is replaced unless another thread
        already did. Fetches for one key are serialised so a burst costs one token request.
        """
        with _fetch_lock(self.key):
            with _token_cache_lock:
                cached = _token_cache.get(self.key)
            if (
                cached is not None
                and not force
                and cached[0] != rejected
                and cached[1] - _clock() >= TOKEN_REFRESH_MARGIN_SECONDS
            ):
                return cached[0]
            token, lifetime = self._fetch(ctx, timeout)
            with _token_cache_lock:
                _token_cache[self.key] = (token, _clock() + lifetime)
            return token

    def _fetch(self, ctx: ConnectorContext, timeout: float) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        if self.audience:
            form["audience"] = self.audience
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        if self.method == "client_secret_post":
            form.update(client_id=self.client_id, client_secret=self.secret)
        else:
            headers["Authorization"] = f"Basic {self.basic}"
        started = time.monotonic()
        try:  # bounded like a delivery: a dripping token endpoint too
            with bounded_request(
                ctx.http,
                "POST",
                self.token_url,
                timeout=timeout,
                redact=self.redact,
                data=urlencode(form),
                headers=headers,
            ) as response:
                raw = _read_token_body(response)
        except EgressDenied:
            raise  # says which address was refused, as it is
        except ConnectorError as error:
            raise type(error)(f"token request failed: {error.message}") from None
        ctx.logger.info(
            "connector.http.token_request status=%s elapsed_ms=%d",
            response.status_code,
            round((time.monotonic() - started) * 1000),
        )
        if response.status_code != 200:
            raise self._token_error(response.status_code, response.headers, raw)
        token, lifetime = _parse_token_response(raw)
        ctx.logger.info("connector.http.token_fetched expires_in=%d", lifetime)
        return token, lifetime

    def _token_error(self, status: int, headers: Mapping[str, str], raw: bytes) -> ConnectorError:
        detail = self.redact(_oauth_error_detail(raw))
        if status in _RETRYABLE_TOKEN_STATUSES or 500 <= status < 600:
            retry_after = parse_retry_after(headers.get("Retry-After"))
            return RetryableConnectorError(
                f"token endpoint answered HTTP {status}{detail}; the delivery can be retried",
                retry_after_seconds=retry_after,
            )
        if 300 <= status < 400:
            return ConnectorError(
                f"token endpoint answered HTTP {status} (a redirect, not followed); set the "
                "token URL to the final address"
            )
        return ConnectorError(
            f"token endpoint refused the client credentials: HTTP {status}{detail}"
        )


def _read_token_body(response: requests.Response) -> bytes:
    """At most 64 KiB of the token response (it holds the token: never log or excerpt it)."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(chunk_size=8192):
            chunks.append(chunk)
            size += len(chunk)
            if size >= 64 * 1024:
                break
    except (requests.RequestException, OSError):
        pass
    return b"".join(chunks)


def _oauth_error_detail(raw: bytes) -> str:
    """The " (code: description)" suffix from an RFC 6749 §5.2 error body, or ""."""
    try:
        body = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    code = body.get("error")
    if not isinstance(code, str) or not _OAUTH_ERROR_CODE.fullmatch(code):
        return ""
    description = body.get("error_description")
    if isinstance(description, str) and description.strip():
        text = re.sub(r"[\x00-\x1f\x7f]+", " ", description).strip()[:200]
        return f" ({code}: {text})"
    return f" ({code})"


def _parse_token_response(raw: bytes) -> tuple[str, float]:
    try:
        body = json.loads(raw.decode("utf-8"))
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ConnectorError("token endpoint answered HTTP 200 without a JSON object")
    token = body.get("access_token")
    if not isinstance(token, str) or not token or any(c in token for c in "\r\n\x00 "):
        raise ConnectorError("token endpoint answered without a usable access_token")
    token_type = body.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise ConnectorError(f"token endpoint issued an unsupported token_type {token_type!r}")
    expires_in = body.get("expires_in", _DEFAULT_EXPIRES_IN)
    try:
        lifetime = float(expires_in)
    except (TypeError, ValueError):
        lifetime = _DEFAULT_EXPIRES_IN
    if lifetime != lifetime or lifetime < 0:  # NaN or negative
        lifetime = _DEFAULT_EXPIRES_IN
    return token, min(lifetime, 10 * 365 * 86400.0)


def _oauth_client(config: Mapping[str, Any], secrets: Mapping[str, str]) -> _OAuthClient | None:
    """The OAuth2 client for an oauth2_client_credentials connection, else None."""
    if config.get("auth", "none") != OAUTH2:
        return None
    token_url = config.get("token_url")
    if not isinstance(token_url, str) or not re.search(_TOKEN_URL_PATTERN, token_url):
        raise ConnectorError("the connection's token_url is missing or not an http(s) URL")
    if not config.get("client_id"):
        raise ConnectorError("auth is 'oauth2_client_credentials' but no client_id is set")
    if config.get("token_auth_method", "client_secret_basic") not in _TOKEN_AUTH_METHODS:
        raise ConnectorError("token_auth_method must be client_secret_basic or client_secret_post")
    secret = secrets.get("client_secret")
    if not secret:
        raise ConnectorError(
            f"auth is {OAUTH2!r} but no client_secret is stored for this connection"
        )
    return _OAuthClient(config, secret, Redactor(secrets.values()))


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
        return json_codec.dumps(message, allow_nan=False)
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
