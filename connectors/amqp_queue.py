"""RabbitMQ queue trigger (event): consume a queue, one message per run.

Consumption contract (``consume``):

* Manual acknowledgements with a bounded prefetch (``basic_qos``). A message is acked only
  after ``handle`` returned, i.e. after the run was committed to the SQL ledger. A consumer
  that dies before the ack leaves the message unacked; the broker redelivers it.
* ``handle`` raising a retryable error (database down, back-pressure, anything unexpected) →
  ``basic_nack(requeue=True)`` and the consumer backs off (1 s, doubling, at most 30 s)
  before taking the next message.
* A body that is not UTF-8 JSON (or NaN/Infinity), or ``handle`` raising a permanent
  ``ConnectorError`` (e.g. a reused message id with another body), is rejected **without**
  requeue and logged: it would fail the same way forever. The broker drops it unless the queue
  has a dead-letter exchange (``x-dead-letter-exchange`` queue argument), which is the
  recommended setup to keep such messages.
* ``event_id: message_id`` (the default) uses the AMQP ``message_id`` property as the run's
  event id, so a redelivery (an ack lost in a crash, a publisher retry) is deduplicated by the
  ledger; a message without ``message_id`` is then accepted without dedupe.
* Acks that fail because the connection dropped are harmless: the broker redelivers and the
  message id dedupes it.

The trigger's connection is an ``amqp_queue`` connection with exactly the RabbitMQ
destination's connection settings (host, port, virtual host, username, TLS, timeouts) and
secret ``password``; connecting reuses the destination's egress-checked ``_connect``.
``stop_event`` is checked at least every half second; the in-flight message is finished
(handled and acked) before ``consume`` returns.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from threading import Event
from typing import Any

from connectors import amqp, json_codec
from connectors.base import (
    CheckResult,
    ConnectorContext,
    ConnectorError,
    ConnectorSpec,
    EventHandler,
    InboundRequest,
    Trigger,
)
from connectors.config import apply_defaults, config_problems

_POLL_SECONDS = 0.5
_MAX_BACKOFF_SECONDS = 30.0

STEP_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "RabbitMQ queue",
    "properties": {
        "queue": {
            "type": "string",
            "title": "Queue",
            "description": "Existing queue to consume from (declare it, durable, beforehand).",
            "minLength": 1,
            "maxLength": 255,
        },
        "prefetch": {
            "type": "integer",
            "title": "Prefetch",
            "description": "How many unacknowledged messages the broker may hand over at once.",
            "default": 10,
            "minimum": 1,
            "maximum": 1000,
        },
        "event_id": {
            "enum": ["message_id", "none"],
            "title": "Event id",
            "description": "message_id: the AMQP message_id property identifies a message, so "
            "redeliveries are accepted once; none: every delivery is a new run.",
            "default": "message_id",
        },
        "business_key": {
            "type": "string",
            "title": "Business key",
            "description": "JSONata expression naming the business object, e.g. "
            "$string(order_number).",
            "minLength": 1,
            "maxLength": 1000,
        },
    },
    "required": ["queue"],
    "additionalProperties": False,
}

SPEC = ConnectorSpec(
    key="amqp_queue",
    name="RabbitMQ queue",
    kind="trigger",
    version=1,
    description="Start the flow for each JSON message consumed from a RabbitMQ queue; the "
    "message is acknowledged only after its run is recorded.",
    connection_schema=amqp.CONNECTION_SCHEMA,
    secret_fields=("password",),
    step_schema=STEP_SCHEMA,
    requires_connection=True,
)


class RejectMessage(ConnectorError):
    """Raised by a handler for a message that can never be accepted: reject, no requeue."""


def parse_body(body: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity; ``ConnectorError`` otherwise."""

    try:
        return json_codec.loads_strict(body)
    except ValueError as exc:
        raise ConnectorError(f"malformed JSON: {exc}") from None


def step_settings(step_config: Mapping[str, Any]) -> dict[str, Any]:
    problems = config_problems(STEP_SCHEMA, dict(step_config))
    if problems:
        detail = "; ".join(f"{path or '/'} {message}" for path, message in problems)
        raise ConnectorError(f"the RabbitMQ queue trigger config is invalid: {detail}")
    return apply_defaults(STEP_SCHEMA, step_config)


class AmqpQueueTrigger(Trigger):
    """An event trigger: ``consume`` runs until ``stop_event`` is set."""

    spec = SPEC

    def accept(self, ctx: ConnectorContext, request: InboundRequest) -> list[Any]:
        raise ConnectorError("a RabbitMQ queue trigger consumes its queue; it takes no requests")

    def check(self, ctx: ConnectorContext) -> CheckResult:
        return amqp.AmqpDestination().check(ctx)

    def consume(self, ctx: ConnectorContext, handle: EventHandler, stop_event: Event) -> None:
        """Consume until ``stop_event`` is set; reconnects (with backoff) on broker failures.

        Raises ``ConnectorError`` for permanent problems (bad config, wrong credentials,
        missing queue): restarting will not help until someone fixes the configuration.
        """
        step = step_settings(ctx.step_config)
        settings, redact = amqp._settings(ctx)
        backoff = 1.0
        while not stop_event.is_set():
            try:
                connection = amqp._connect(ctx, settings, redact)
            except ConnectorError as exc:
                if not exc.retryable:
                    raise
                ctx.logger.warning(
                    "connector.amqp_queue.connect_failed error=%s retry_in=%gs", exc, backoff
                )
                stop_event.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
                continue
            try:
                self._consume_on(ctx, connection, step, handle, stop_event)
                backoff = 1.0
            except ConnectorError:
                raise
            except Exception as exc:  # connection lost: unacked messages go back to the queue
                ctx.logger.warning(
                    "connector.amqp_queue.connection_lost error=%s retry_in=%gs",
                    redact(amqp._root_cause(exc)),
                    backoff,
                )
                stop_event.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
            finally:
                amqp._close_quietly(connection, settings.connect_timeout)

    def _consume_on(
        self,
        ctx: ConnectorContext,
        connection: Any,
        step: Mapping[str, Any],
        handle: EventHandler,
        stop_event: Event,
    ) -> None:
        from pika import exceptions as amqp_errors

        queue = step["queue"]
        channel = connection.channel()
        try:
            channel.queue_declare(queue, passive=True)
        except amqp_errors.ChannelClosedByBroker as exc:
            raise ConnectorError(
                f"cannot consume queue {queue!r}: {exc.reply_code} {exc.reply_text}"
            ) from None
        channel.basic_qos(prefetch_count=int(step["prefetch"]))
        ctx.logger.info("connector.amqp_queue.consuming queue=%s", queue)
        failures = 0
        for method, properties, body in channel.consume(
            queue, auto_ack=False, inactivity_timeout=_POLL_SECONDS
        ):
            if method is None:  # idle: look at the stop flag
                if stop_event.is_set():
                    break
                continue
            ok = self._one(ctx, channel, method, properties, body, step, handle)
            if ok:
                failures = 0
            else:
                failures += 1
                delay = min(2.0 ** (failures - 1), _MAX_BACKOFF_SECONDS)
                # Wait without holding the in-flight message (it was nacked already); keep
                # the connection alive meanwhile.
                deadline = time.monotonic() + delay
                while not stop_event.is_set() and time.monotonic() < deadline:
                    connection.process_data_events(time_limit=min(_POLL_SECONDS, delay))
            if stop_event.is_set():
                break
        # Prefetched, unacked messages return to the queue when the channel closes.
        try:
            channel.cancel()
        except Exception:
            pass

    def _one(
        self,
        ctx: ConnectorContext,
        channel: Any,
        method: Any,
        properties: Any,
        body: bytes,
        step: Mapping[str, Any],
        handle: EventHandler,
    ) -> bool:
        """Handle one delivery; False when it was nacked for a retry."""
        tag = method.delivery_tag
        message_id = getattr(properties, "message_id", None)
        try:
            message = parse_body(body)
        except ConnectorError as exc:
            ctx.logger.error(
                "connector.amqp_queue.rejected queue=%s message_id=%s reason=%s",
                step["queue"],
                message_id,
                exc.message,
            )
            channel.basic_reject(tag, requeue=False)
            return True
        event_id = str(message_id) if step["event_id"] == "message_id" and message_id else None
        try:
            handle(message, event_id)
        except ConnectorError as exc:
            if exc.retryable:
                return self._nack(ctx, channel, tag, step, message_id, exc)
            ctx.logger.error(
                "connector.amqp_queue.rejected queue=%s message_id=%s reason=%s",
                step["queue"],
                message_id,
                exc.message,
            )
            channel.basic_reject(tag, requeue=False)
            return True
        except Exception as exc:
            return self._nack(ctx, channel, tag, step, message_id, exc)
        channel.basic_ack(tag)
        return True

    def _nack(
        self,
        ctx: ConnectorContext,
        channel: Any,
        tag: int,
        step: Mapping[str, Any],
        message_id: Any,
        exc: Exception,
    ) -> bool:
        ctx.logger.warning(
            "connector.amqp_queue.requeued queue=%s message_id=%s error=%s",
            step["queue"],
            message_id,
            type(exc).__name__,
        )
        channel.basic_nack(tag, requeue=True)
        return False


CONNECTOR = AmqpQueueTrigger
