"""Redis Streams destination: XADD each message to a stream, once per idempotency key.

Each entry has two fields: the message as UTF-8 JSON (field name configurable, default
``payload``) and ``idempotency_key``. An optional ``maxlen`` trims the stream approximately
(``MAXLEN ~``), which lets Redis drop whole internal nodes, so the stream may keep somewhat
more entries than the limit.

Idempotency: one Lua script (atomic, so no other client runs in between) looks up a marker
key ``<stream>:idem:<idempotency key>``; if it exists, nothing is added and the entry id it
holds is reported; otherwise the script XADDs and stores the new entry id in the marker with
a TTL of 7 days. Re-sending the same key within 7 days therefore adds nothing. Markers are
plain keys next to the stream: trimming or deleting the stream does not remove them, and
they cost one small key per message for 7 days. The marker is written after the XADD, so an
XADD that fails (a key of the wrong type, out of memory) leaves no marker behind. Both keys
are touched by one script, so Redis Cluster is not supported (they may hash to different
slots).

Every connection resolves the host once through the egress policy and connects to a
checked address; with TLS the certificate is verified against the configured host name.
"""

from __future__ import annotations

import functools
import json
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.base import (
    CheckResult,
    ConnectorContext,
    ConnectorError,
    ConnectorSpec,
    Destination,
    RetryableConnectorError,
    SendResult,
)
from connectors.config import apply_defaults, config_problems
from connectors.egress import checked_addresses
from connectors.redaction import Redactor

MARKER_TTL_SECONDS = 7 * 24 * 3600
IDEMPOTENCY_FIELD = "idempotency_key"
_HOST_PATTERN = r"^[A-Za-z0-9._:\[\]-]+$"
_FIELD_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
# Error replies redis-py has no class for that describe a passing condition (a busy script,
# a replica that lost its primary).
_TRANSIENT_REPLIES = ("BUSY", "MASTERDOWN")

# KEYS[1] stream, KEYS[2] marker; ARGV: ttl, maxlen ("" = none), payload field, payload, key.
_IDEMPOTENT_XADD = """
local existing = redis.call('GET', KEYS[2])
if existing then
  return {0, existing}
end
local id
if ARGV[2] ~= '' then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
                  ARGV[3], ARGV[4], 'idempotency_key', ARGV[5])
else
  id = redis.call('XADD', KEYS[1], '*', ARGV[3], ARGV[4], 'idempotency_key', ARGV[5])
end
redis.call('SET', KEYS[2], id, 'EX', ARGV[1])
return {1, id}
"""

CONNECTION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "Redis connection",
    "properties": {
        "host": {
            "type": "string",
            "title": "Host",
            "description": "Redis host name or IP address, without scheme or port.",
            "pattern": _HOST_PATTERN,
            "maxLength": 253,
            "errorMessage": {"pattern": "must be a host name or IP address (no scheme or port)"},
        },
        "port": {
            "type": "integer",
            "title": "Port",
            "description": "Redis port, usually 6379 (often 6380 with TLS).",
            "default": 6379,
            "minimum": 1,
            "maximum": 65535,
        },
        "db": {
            "type": "integer",
            "title": "Database",
            "description": "Logical database number (SELECT).",
            "default": 0,
            "minimum": 0,
            "maximum": 65535,
        },
        "username": {
            "type": "string",
            "title": "Username",
            "description": "ACL user (Redis 6+); leave empty for the default user.",
            "maxLength": 255,
        },
        "tls": {
            "type": "boolean",
            "title": "Use TLS",
            "description": "Connect with TLS (rediss); the server's certificate must be valid "
            "for the host name above.",
            "default": False,
        },
        "timeout_seconds": {
            "type": "number",
            "title": "Timeout (seconds)",
            "description": "Limit for connecting and for each command's answer.",
            "default": 10,
            "minimum": 0.1,
            "maximum": 120,
        },
    },
    "required": ["host"],
    "additionalProperties": False,
}

STEP_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "Add to Redis stream",
    "properties": {
        "stream": {
            "type": "string",
            "title": "Stream",
            "description": "Key of the stream, e.g. orders:created. Created on first add.",
            "minLength": 1,
            "maxLength": 512,
            "pattern": r"^[^\s\x00]+$",
            "errorMessage": {"pattern": "cannot contain spaces or control characters"},
        },
        "maxlen": {
            "type": "integer",
            "title": "Maximum length",
            "description": "Trim the stream to about this many entries on each add "
            "(approximate: Redis may keep a few more). Leave empty to never trim.",
            "minimum": 1,
        },
        "payload_field": {
            "type": "string",
            "title": "Payload field",
            "description": "Name of the entry field that holds the message as JSON.",
            "default": "payload",
            "pattern": _FIELD_PATTERN,
            "not": {"const": IDEMPOTENCY_FIELD},
            "errorMessage": {
                "pattern": "must be 1-64 letters, digits or _ . : -",
                "not": f"'{IDEMPOTENCY_FIELD}' is set by the connector",
            },
        },
    },
    "required": ["stream"],
    "additionalProperties": False,
}

SPEC = ConnectorSpec(
    key="redis_stream",
    name="Redis stream",
    kind="destination",
    version=1,
    description="XADD each message as JSON to a Redis stream; a re-sent idempotency key "
    "adds nothing (marker key kept 7 days).",
    connection_schema=CONNECTION_SCHEMA,
    secret_fields=("password",),
    step_schema=STEP_SCHEMA,
    requires_connection=True,
    idempotency="key",
)


@dataclass(frozen=True)
class _Settings:
    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls: bool
    timeout: float

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


class RedisStreamDestination(Destination):
    """Adds one stream entry per message; see the module docstring for the contract."""

    spec = SPEC

    def send(self, ctx: ConnectorContext, message: Any, *, idempotency_key: str) -> SendResult:
        """XADD ``message`` unless an entry with ``idempotency_key`` was added already."""
        settings, redact = _settings(ctx)
        step = _step(ctx.step_config)
        payload = _encode(message)
        maxlen = "" if step.get("maxlen") is None else str(int(step["maxlen"]))
        started = time.monotonic()
        client = _client(ctx, settings)
        try:
            added, entry_id = client.eval(
                _IDEMPOTENT_XADD,
                2,
                step["stream"],
                marker_key(step["stream"], idempotency_key),
                MARKER_TTL_SECONDS,
                maxlen,
                step["payload_field"],
                payload,
                idempotency_key,
            )
        except Exception as exc:
            raise _error(exc, settings, redact) from exc
        finally:
            _close(client)
        entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        ctx.logger.info(
            "connector.redis_stream.sent stream=%s added=%s elapsed_ms=%d",
            step["stream"],
            bool(added),
            elapsed_ms,
        )
        if added:
            return SendResult(status_code=None, response_excerpt=f"added entry {entry}")
        return SendResult(
            status_code=None,
            response_excerpt=f"already added as entry {entry}; nothing added again",
        )

    def check(self, ctx: ConnectorContext) -> CheckResult:
        """PING the server and report its version."""
        try:
            settings, redact = _settings(ctx)
            started = time.monotonic()
            client = _client(ctx, settings)
        except ConnectorError as exc:
            return CheckResult(ok=False, message=exc.message)
        try:
            client.ping()
            version = _server_version(client)
        except Exception as exc:
            return CheckResult(ok=False, message=_error(exc, settings, redact).message)
        finally:
            _close(client)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        return CheckResult(
            ok=True,
            message=f"connected to {version} at {settings.target}, db {settings.db}, "
            f"in {elapsed_ms} ms",
        )


def marker_key(stream: str, idempotency_key: str) -> str:
    """The key that remembers which entry an idempotency key added."""
    return f"{stream}:idem:{idempotency_key}"


def _settings(ctx: ConnectorContext) -> tuple[_Settings, Redactor]:
    problems = config_problems(CONNECTION_SCHEMA, dict(ctx.connection_config))
    if problems:
        detail = "; ".join(f"{path or '/'} {message}" for path, message in problems)
        raise ConnectorError(f"the Redis connection config is invalid: {detail}")
    config = apply_defaults(CONNECTION_SCHEMA, ctx.connection_config)
    settings = _Settings(
        host=config["host"],
        port=int(config["port"]),
        db=int(config["db"]),
        username=config.get("username") or None,
        password=ctx.secrets.get("password") or None,
        tls=bool(config["tls"]),
        timeout=float(config["timeout_seconds"]),
    )
    return settings, Redactor(ctx.secrets.values())


def _step(step_config: Mapping[str, Any]) -> dict[str, Any]:
    # Re-checked at run time because stored flows may predate a schema change.
    problems = config_problems(STEP_SCHEMA, dict(step_config))
    if problems:
        detail = "; ".join(f"{path or '/'} {message}" for path, message in problems)
        raise ConnectorError(f"the Redis stream step config is invalid: {detail}")
    return apply_defaults(STEP_SCHEMA, step_config)


def _encode(message: Any) -> str:
    try:
        return json.dumps(message, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConnectorError(f"message cannot be sent as JSON: {exc}") from None


def _client(ctx: ConnectorContext, settings: _Settings) -> Any:
    """A redis client whose connections go only to addresses the egress policy allowed."""
    if ctx.egress is None:
        raise ConnectorError("no egress policy: refusing to open an outbound connection")
    addresses = checked_addresses(ctx.egress, settings.host, settings.port)
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    plain, tls = _connection_classes()
    pool = redis.ConnectionPool(
        connection_class=tls if settings.tls else plain,
        checked_addresses=tuple(addresses),
        host=settings.host,  # kept for messages and TLS verification; never resolved again
        port=settings.port,
        db=settings.db,
        username=settings.username,
        password=settings.password,
        socket_timeout=settings.timeout,
        socket_connect_timeout=settings.timeout,
        # The engine owns retries (with the same idempotency key); don't hide them here.
        retry=Retry(NoBackoff(), 0),
        client_name="flowgate",
        max_connections=1,
    )
    return redis.Redis(connection_pool=pool)


def _close(client: Any) -> None:
    client.close()
    client.connection_pool.disconnect()  # a pool passed in is not closed by close()


@functools.cache
def _connection_classes() -> tuple[type[Any], type[Any]]:
    """redis-py connection classes that connect to the pre-checked addresses only."""
    from redis.connection import Connection, SSLConnection

    def open_socket(conn: Any) -> Any:
        # Connection._connect resolves conn.host; point it at each checked (numeric) address.
        name, error = conn.host, None
        for address in conn.checked_addresses:
            conn.host = address
            try:
                return Connection._connect(conn)
            except OSError as exc:
                error = exc
            finally:
                conn.host = name
        raise error or OSError("no address to connect to")

    class CheckedConnection(Connection):
        def __init__(self, *, checked_addresses: tuple[str, ...], **kwargs: Any) -> None:
            self.checked_addresses = checked_addresses
            super().__init__(**kwargs)

        def _connect(self) -> Any:
            return open_socket(self)

    class CheckedSSLConnection(SSLConnection):
        def __init__(self, *, checked_addresses: tuple[str, ...], **kwargs: Any) -> None:
            self.checked_addresses = checked_addresses
            super().__init__(**kwargs)

        def _connect(self) -> Any:
            sock = open_socket(self)
            try:
                return self._wrap_socket_with_ssl(sock)  # server_hostname = the configured host
            except Exception:
                sock.close()
                raise

    return CheckedConnection, CheckedSSLConnection


def _server_version(client: Any) -> str:
    from redis.exceptions import NoPermissionError

    try:
        info = client.info("server")
    except NoPermissionError:
        return "Redis (version hidden: INFO not permitted)"
    mode = info.get("redis_mode")
    version = f"Redis {info.get('redis_version', '(unknown version)')}"
    return f"{version} ({mode})" if mode else version


def _error(exc: Exception, settings: _Settings, redact: Redactor) -> ConnectorError:
    """Classify a redis-py failure: connectivity is retryable, refusals are permanent."""
    from redis import exceptions as r

    if isinstance(exc, ConnectorError):
        return exc
    target = settings.target
    reason = redact(str(exc).strip() or type(exc).__name__)
    if isinstance(exc, r.AuthenticationError | r.AuthenticationWrongNumberOfArgsError):
        user = settings.username or "default"
        return ConnectorError(f"{target} refused the credentials of user {user!r}: {reason}")
    if isinstance(exc, r.NoPermissionError):
        return ConnectorError(f"{target} denied the command (ACL): {reason}")
    if isinstance(exc, r.TimeoutError):
        return RetryableConnectorError(f"no answer from {target} within {settings.timeout:g} s")
    if isinstance(exc, r.ConnectionError):
        if _caused_by_tls(exc):
            return ConnectorError(f"TLS handshake with {target} failed: {reason}")
        return RetryableConnectorError(f"could not reach {target}: {reason}")
    if isinstance(exc, r.ResponseError):
        transient = isinstance(
            exc, r.ReadOnlyError | r.OutOfMemoryError | r.TryAgainError | r.ClusterDownError
        )
        if transient or reason.upper().startswith(_TRANSIENT_REPLIES):
            return RetryableConnectorError(f"{target} cannot take writes right now: {reason}")
        return ConnectorError(f"{target} rejected the command: {reason}")
    return ConnectorError(f"Redis at {target} failed: {reason}")


def _caused_by_tls(exc: BaseException) -> bool:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        if isinstance(current, ssl.SSLError):
            return True
        seen.append(current)
        current = current.__cause__ or current.__context__
    return False


CONNECTOR = RedisStreamDestination
