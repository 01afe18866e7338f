"""RabbitMQ (AMQP 0-9-1) destination: publish each message to an exchange, with confirms.

Delivery contract:

* The body is the message as UTF-8 JSON (``content_type`` ``application/json``), published
  persistent (``delivery_mode=2``) with ``message_id`` set to the idempotency key. A delivery
  whose confirm was lost is published again on retry, so consumers dedupe on ``message_id``.
* Publisher confirms are on: ``send()`` returns only once the broker has acked the message.
  A nack is retryable; a message returned as unroutable (``mandatory``, the default) is a
  permanent error naming the exchange and routing key. No confirm within the confirm timeout
  drops the connection and is retryable.
* Persistence only survives a broker restart if the queues the message lands in are durable.

Connections: every connection resolves its host once through the egress policy and connects
to a checked address (TLS still verifies the certificate against the configured host name).
A ``BlockingConnection`` and its confirm-mode channel are cached per thread and per
connection settings, because pika's ``BlockingConnection`` is not thread-safe: a thread only
ever uses its own. Before each publish a cached connection is probed (pending I/O and
heartbeats are processed without waiting); a dead one is reopened. A connection that fails
during a publish is discarded and the failure is retryable; the next attempt reconnects. A
forked process (an RQ work horse) never reuses its parent's connections. An idle cached
connection answers no heartbeats, so the broker may drop it; the probe then reconnects.

pika's blocking calls (confirm wait, channel open, close) have no deadline of their own, so
``_with_deadline`` arms a timer in pika's I/O loop that aborts the stream as a missed heartbeat
would. It uses two private pika hooks (``_adapter_call_later``, ``_terminate_stream``); the
tests stall a real connection to cover them, and pyproject pins pika below 2.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
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

_HOST_PATTERN = r"^[A-Za-z0-9._:\[\]-]+$"
# AMQP 0-9-1 exchange names: letters, digits, hyphen, underscore, period, colon.
_EXCHANGE_PATTERN = r"^[A-Za-z0-9_.:-]*$"
_HEADER_NAME_PATTERN = r"^[!-~]{1,128}$"  # printable ASCII, no spaces
_MAX_SHORTSTR_BYTES = 255
_MAX_CACHED_PER_THREAD = 8
_CONTENT_TYPE = "application/json"

CONNECTION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "RabbitMQ connection",
    "properties": {
        "host": {
            "type": "string",
            "title": "Host",
            "description": "Broker host name or IP address, without scheme or port.",
            "pattern": _HOST_PATTERN,
            "maxLength": 253,
            "errorMessage": {"pattern": "must be a host name or IP address (no scheme or port)"},
        },
        "port": {
            "type": "integer",
            "title": "Port",
            "description": "AMQP port: 5672, or usually 5671 with TLS.",
            "default": 5672,
            "minimum": 1,
            "maximum": 65535,
        },
        "virtual_host": {
            "type": "string",
            "title": "Virtual host",
            "description": "RabbitMQ virtual host to publish in.",
            "default": "/",
            "minLength": 1,
            "maxLength": 255,
        },
        "username": {
            "type": "string",
            "title": "Username",
            "description": "User that logs in to the broker (its password is stored as a secret).",
            "minLength": 1,
            "maxLength": 255,
        },
        "heartbeat_seconds": {
            "type": "integer",
            "title": "Heartbeat (seconds)",
            "description": "AMQP heartbeat interval proposed to the broker; 0 disables it.",
            "default": 60,
            "minimum": 0,
            "maximum": 3600,
        },
        "connect_timeout_seconds": {
            "type": "number",
            "title": "Connection timeout (seconds)",
            "description": "Limit for opening a connection: TCP, TLS and the AMQP handshake.",
            "default": 10,
            "minimum": 0.1,
            "maximum": 120,
        },
        "confirm_timeout_seconds": {
            "type": "number",
            "title": "Confirm timeout (seconds)",
            "description": "How long to wait for the broker to confirm a message (and how long "
            "it may block publishing) before the attempt fails and is retried.",
            "default": 10,
            "minimum": 0.1,
            "maximum": 300,
        },
        "tls": {
            "type": "boolean",
            "title": "Use TLS",
            "description": "Connect with TLS (amqps); the broker's certificate must be valid "
            "for the host name above.",
            "default": False,
        },
    },
    "required": ["host", "username"],
    "additionalProperties": False,
}

STEP_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "Publish to RabbitMQ",
    "properties": {
        "exchange": {
            "type": "string",
            "title": "Exchange",
            "description": "Exchange to publish to; empty for the default exchange, which "
            "routes to the queue named by the routing key.",
            "default": "",
            "pattern": _EXCHANGE_PATTERN,
            "maxLength": 255,
            "errorMessage": {
                "pattern": "may only contain letters, digits, hyphen, underscore, period and colon"
            },
        },
        "routing_key": {
            "type": "string",
            "title": "Routing key",
            "description": "Routing key of every message (a queue name for the default "
            "exchange, a topic such as orders.created for a topic exchange).",
            "default": "",
            "maxLength": _MAX_SHORTSTR_BYTES,
        },
        "mandatory": {
            "type": "boolean",
            "title": "Fail if unroutable",
            "description": "If no queue is bound for the routing key, the broker returns the "
            "message and the delivery fails instead of the message being dropped.",
            "default": True,
        },
        "headers": {
            "type": "object",
            "title": "Headers",
            "description": "AMQP headers added to every message (string values).",
            "propertyNames": {
                "type": "string",
                "pattern": _HEADER_NAME_PATTERN,
                "errorMessage": {"pattern": "must be 1-128 printable ASCII characters"},
            },
            "additionalProperties": {"type": "string", "maxLength": 4096},
            "maxProperties": 64,
            "default": {},
        },
    },
    "required": ["exchange", "routing_key"],
    "additionalProperties": False,
}

SPEC = ConnectorSpec(
    key="amqp",
    name="RabbitMQ (AMQP)",
    kind="destination",
    version=1,
    description="Publish each message as persistent JSON to a RabbitMQ exchange, with "
    "publisher confirms; message_id carries the idempotency key.",
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
    virtual_host: str
    username: str
    password: str
    heartbeat: int
    connect_timeout: float
    confirm_timeout: float
    tls: bool

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def cache_key(self, egress: Any) -> tuple[Any, ...]:
        # The key holds a hash of the password, not the password; confirm_timeout is per call.
        digest = hashlib.sha256(self.password.encode()).hexdigest()
        return (replace(self, password=digest, confirm_timeout=0.0), egress)


@dataclass
class _Link:
    """A connection and its confirm-mode channel, used by one thread only."""

    connection: Any
    channel: Any
    product: str
    close_timeout: float


class AmqpDestination(Destination):
    """Publishes one message per call; see the module docstring for the contract."""

    spec = SPEC

    def send(self, ctx: ConnectorContext, message: Any, *, idempotency_key: str) -> SendResult:
        """Publish ``message`` and wait for the broker's confirm."""
        settings, redact = _settings(ctx)
        step = _step(ctx.step_config)
        body = _encode(message)
        link = _cached_link(ctx, settings, redact)
        started = time.monotonic()
        try:
            _publish(link, step, body, idempotency_key, settings.confirm_timeout)
        except Exception as exc:
            error, keep = _publish_error(exc, step, settings, redact)
            if not keep:
                _discard(ctx, settings, link)
            raise error from exc
        elapsed_ms = round((time.monotonic() - started) * 1000)
        ctx.logger.info(
            "connector.amqp.published exchange=%s routing_key=%s elapsed_ms=%d",
            step["exchange"] or "(default)",
            step["routing_key"],
            elapsed_ms,
        )
        return SendResult(
            status_code=None,
            response_excerpt=f"confirmed by {link.product} in {elapsed_ms} ms",
        )

    def check(self, ctx: ConnectorContext) -> CheckResult:
        """Open a fresh connection and report the broker's product and version."""
        try:
            settings, redact = _settings(ctx)
            started = time.monotonic()
            connection = _connect(ctx, settings, redact)
        except ConnectorError as exc:
            return CheckResult(ok=False, message=exc.message)
        try:
            product = _product(connection)
            confirms = bool(connection.publisher_confirms_supported)
        finally:
            _close_quietly(connection, settings.connect_timeout)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        if not confirms:
            return CheckResult(
                ok=False, message=f"{product} at {settings.target} has no publisher confirms"
            )
        return CheckResult(
            ok=True,
            message=f"connected to {product} at {settings.target}, virtual host "
            f"{settings.virtual_host!r}, in {elapsed_ms} ms",
        )


def _settings(ctx: ConnectorContext) -> tuple[_Settings, Redactor]:
    problems = config_problems(CONNECTION_SCHEMA, dict(ctx.connection_config))
    if problems:
        detail = "; ".join(f"{path or '/'} {message}" for path, message in problems)
        raise ConnectorError(f"the AMQP connection config is invalid: {detail}")
    config = apply_defaults(CONNECTION_SCHEMA, ctx.connection_config)
    password = ctx.secrets.get("password") or ""
    if not password:
        raise ConnectorError("no password is stored for this AMQP connection")
    settings = _Settings(
        host=config["host"],
        port=int(config["port"]),
        virtual_host=config["virtual_host"],
        username=config["username"],
        password=password,
        heartbeat=int(config["heartbeat_seconds"]),
        connect_timeout=float(config["connect_timeout_seconds"]),
        confirm_timeout=float(config["confirm_timeout_seconds"]),
        tls=bool(config["tls"]),
    )
    return settings, Redactor(ctx.secrets.values())


def _step(step_config: Mapping[str, Any]) -> dict[str, Any]:
    # Re-checked at run time because stored flows may predate a schema change.
    problems = config_problems(STEP_SCHEMA, dict(step_config))
    if problems:
        detail = "; ".join(f"{path or '/'} {message}" for path, message in problems)
        raise ConnectorError(f"the AMQP step config is invalid: {detail}")
    step = apply_defaults(STEP_SCHEMA, step_config)
    if len(step["routing_key"].encode("utf-8")) > _MAX_SHORTSTR_BYTES:
        raise ConnectorError(f"the routing key is longer than {_MAX_SHORTSTR_BYTES} bytes")
    return step


def _encode(message: Any) -> bytes:
    try:
        return json.dumps(message, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ConnectorError(f"message cannot be sent as JSON: {exc}") from None


# --- connections ---

_LOCAL = threading.local()  # per-thread cache: pika's BlockingConnection is not thread-safe


def _thread_cache() -> OrderedDict[tuple[Any, ...], _Link]:
    pid = os.getpid()
    if getattr(_LOCAL, "pid", None) != pid:
        # A forked child must not talk over its parent's sockets: start from scratch.
        _LOCAL.pid, _LOCAL.links = pid, OrderedDict()
    links: OrderedDict[tuple[Any, ...], _Link] = _LOCAL.links
    return links


def close_cached_connections() -> None:
    """Close the calling thread's cached connections (worker shutdown, tests)."""
    cache = _thread_cache()
    while cache:
        _, link = cache.popitem()
        _close_quietly(link.connection, link.close_timeout)


def _cached_link(ctx: ConnectorContext, settings: _Settings, redact: Redactor) -> _Link:
    if ctx.egress is None:
        raise ConnectorError("no egress policy: refusing to open an outbound connection")
    cache = _thread_cache()
    key = settings.cache_key(ctx.egress)
    link = cache.get(key)
    if link is not None:
        if _alive(link):
            cache.move_to_end(key)
            return link
        ctx.logger.info("connector.amqp.reconnecting target=%s", settings.target)
        del cache[key]
        _close_quietly(link.connection, link.close_timeout)
    connection = _connect(ctx, settings, redact)
    try:
        channel = _with_deadline(connection, settings.connect_timeout, connection.channel)
        _with_deadline(connection, settings.connect_timeout, channel.confirm_delivery)
    except Exception as exc:
        _close_quietly(connection, settings.connect_timeout)
        raise _connect_error(exc, settings, redact) from exc
    link = _Link(connection, channel, _product(connection), settings.connect_timeout)
    cache[key] = link
    while len(cache) > _MAX_CACHED_PER_THREAD:
        _, evicted = cache.popitem(last=False)
        _close_quietly(evicted.connection, evicted.close_timeout)
    return link


def _discard(ctx: ConnectorContext, settings: _Settings, link: _Link) -> None:
    cache = _thread_cache()
    key = settings.cache_key(ctx.egress)
    if cache.get(key) is link:
        del cache[key]
    _close_quietly(link.connection, link.close_timeout)


def _alive(link: _Link) -> bool:
    """Process pending I/O without waiting: notices a closed socket, answers heartbeats."""
    try:
        link.connection.process_data_events(time_limit=0)
    except Exception:
        return False
    return bool(link.connection.is_open and link.channel.is_open)


def _connect(ctx: ConnectorContext, settings: _Settings, redact: Redactor) -> Any:
    """Open a BlockingConnection to an address the egress policy allowed."""
    if ctx.egress is None:
        raise ConnectorError("no egress policy: refusing to open an outbound connection")
    addresses = checked_addresses(ctx.egress, settings.host, settings.port)
    import pika

    ssl_options = None
    if settings.tls:
        import ssl

        # Connect to the checked address, verify the certificate against the configured name.
        ssl_options = pika.SSLOptions(ssl.create_default_context(), settings.host)
    parameters = [
        pika.ConnectionParameters(
            host=address,
            port=settings.port,
            virtual_host=settings.virtual_host,
            credentials=pika.PlainCredentials(
                settings.username, settings.password, erase_on_connect=True
            ),
            heartbeat=settings.heartbeat,
            connection_attempts=1,
            socket_timeout=settings.connect_timeout,
            stack_timeout=settings.connect_timeout,
            blocked_connection_timeout=settings.confirm_timeout,
            ssl_options=ssl_options,
            client_properties={"connection_name": "flowgate", "product": "Flowgate"},
        )
        for address in addresses
    ]
    try:
        return pika.BlockingConnection(parameters)
    except Exception as exc:
        raise _connect_error(exc, settings, redact) from exc


def _close_quietly(connection: Any, timeout: float) -> None:
    try:
        if connection.is_open:
            _with_deadline(connection, timeout, connection.close)
    except Exception:  # already broken or aborted by the deadline: the socket is released
        pass


def _product(connection: Any) -> str:
    properties = getattr(connection._impl, "server_properties", None) or {}

    def text(name: str) -> str:
        value = properties.get(name, "")
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    return " ".join(part for part in (text("product"), text("version")) if part) or "the broker"


# --- publishing ---


def _publish(link: _Link, step: Mapping[str, Any], body: bytes, key: str, timeout: float) -> None:
    import pika

    properties = pika.BasicProperties(
        content_type=_CONTENT_TYPE,
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=key,
        timestamp=int(time.time()),
        app_id="flowgate",
        headers=dict(step["headers"]) or None,
    )
    _with_deadline(
        link.connection,
        timeout,
        lambda: link.channel.basic_publish(
            exchange=step["exchange"],
            routing_key=step["routing_key"],
            body=body,
            properties=properties,
            mandatory=bool(step["mandatory"]),
        ),
    )


class _DeadlineExpired(Exception):
    def __init__(self, timeout: float) -> None:
        super().__init__(f"no answer from the broker within {timeout:g} s")
        self.timeout = timeout


def _with_deadline(connection: Any, timeout: float, action: Callable[[], Any]) -> Any:
    """Run a blocking pika call, aborting the connection if it takes longer than ``timeout``.

    pika waits for confirms, RPC replies and Close-Ok without a deadline (a stalled broker
    holds a publish until heartbeats give up, minutes later). This timer runs inside pika's
    own wait loop and aborts the stream the way a missed heartbeat does, so the call returns.
    """
    import pika

    impl = connection._impl
    expired: list[bool] = []

    def expire() -> None:
        expired.append(True)
        impl._terminate_stream(pika.exceptions.AMQPHeartbeatTimeout("deadline expired"))

    timer = impl._adapter_call_later(timeout, expire)
    try:
        return action()
    except Exception as exc:
        if expired:
            raise _DeadlineExpired(timeout) from exc
        raise
    finally:
        if not expired:
            impl._adapter_remove_timeout(timer)


# Close codes saying the message or the configuration is wrong (AMQP 0-9-1): access refused,
# not found, precondition failed (e.g. message too large), not allowed.
_PERMANENT_CLOSE_CODES = frozenset({403, 404, 406, 530})


def _publish_error(
    exc: Exception, step: Mapping[str, Any], settings: _Settings, redact: Redactor
) -> tuple[ConnectorError, bool]:
    """The error a failed publish means, and whether the cached link is still usable."""
    from pika import exceptions as amqp

    where = f"exchange {step['exchange'] or '(default)'!r} with routing key {step['routing_key']!r}"
    if isinstance(exc, amqp.UnroutableError):
        returned = exc.messages[0].method if exc.messages else None
        reason = f" ({returned.reply_code} {returned.reply_text})" if returned else ""
        return (
            ConnectorError(
                f"the broker returned the message as unroutable{reason}: no queue is bound to "
                f"{where}; bind a queue or turn off 'Fail if unroutable'"
            ),
            True,
        )
    if isinstance(exc, amqp.NackError):
        return RetryableConnectorError(f"the broker nacked the message sent to {where}"), True
    if isinstance(exc, _DeadlineExpired):
        return RetryableConnectorError(
            f"{settings.target} sent no publisher confirm within {exc.timeout:g} s"
        ), False
    if isinstance(exc, amqp.ConnectionBlockedTimeout):
        return RetryableConnectorError(
            f"{settings.target} blocked publishing (resource alarm) for more than "
            f"{settings.confirm_timeout:g} s"
        ), False
    if isinstance(exc, amqp.ChannelClosedByBroker | amqp.ConnectionClosedByBroker):
        closed = "channel" if isinstance(exc, amqp.ChannelClosedByBroker) else "connection"
        reply = redact(f"{exc.reply_code} {exc.reply_text}")
        message = f"the broker closed the {closed} publishing to {where}: {reply}"
        if exc.reply_code in _PERMANENT_CLOSE_CODES:
            return ConnectorError(message), False
        return RetryableConnectorError(message), False
    if isinstance(exc, amqp.AMQPError | OSError):
        reason = redact(_root_cause(exc))
        return RetryableConnectorError(
            f"connection to {settings.target} failed while publishing: {reason}"
        ), False
    return ConnectorError(f"could not publish to {where}: {redact(_root_cause(exc))}"), False


def _connect_error(exc: Exception, settings: _Settings, redact: Redactor) -> ConnectorError:
    """Classify a failure to open a connection or its channel."""
    import ssl

    from pika import exceptions as amqp

    target = settings.target
    if isinstance(exc, amqp.ProbableAuthenticationError | amqp.AuthenticationError):
        return ConnectorError(
            f"{target} refused the login of user {settings.username!r}: wrong username or password"
        )
    if isinstance(exc, amqp.ProbableAccessDeniedError):
        return ConnectorError(
            f"{target} refused access to virtual host {settings.virtual_host!r} for user "
            f"{settings.username!r}: it does not exist or the user has no permission"
        )
    if isinstance(exc, amqp.IncompatibleProtocolError):
        return ConnectorError(f"{target} does not speak AMQP 0-9-1 (wrong port?)")
    reason = redact(_root_cause(exc))
    if isinstance(_innermost(exc), ssl.SSLError):
        return ConnectorError(f"TLS handshake with {target} failed: {reason}")
    if isinstance(exc, amqp.ConnectionClosedByBroker) and exc.reply_code in (403, 530):
        return ConnectorError(f"{target} refused the connection: {reason}")
    return RetryableConnectorError(f"could not connect to {target}: {reason}")


def _innermost(exc: BaseException) -> BaseException:
    # pika nests the socket error in args (and connection workflow errors in .exception).
    seen = [exc]
    while True:
        current = seen[-1]
        nxt = getattr(current, "exception", None)
        if not isinstance(nxt, BaseException) and current.args:
            nxt = current.args[0]
        if not isinstance(nxt, BaseException):
            nxt = current.__cause__
        if not isinstance(nxt, BaseException) or nxt in seen:
            return current
        seen.append(nxt)


def _root_cause(exc: BaseException) -> str:
    innermost = _innermost(exc)
    if isinstance(innermost, OSError) and innermost.strerror:
        return innermost.strerror
    text = str(innermost).strip()
    return text or type(innermost).__name__


CONNECTOR = AmqpDestination
