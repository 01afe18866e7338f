"""Redis Streams consumer-group trigger (event): one stream entry per run.

Consumption contract (``consume``):

* The group is created if missing (``XGROUP CREATE ... MKSTREAM``), starting at new entries
  (``$``) or, with ``start: all``, at the beginning of the stream.
* Entries are read with ``XREADGROUP`` (``BLOCK`` 500 ms, so ``stop_event`` is seen within
  half a second) and ``XACK``-ed only after ``handle`` returned, i.e. after the run was
  committed. An unacked entry stays in the group's pending list.
* On start, and again every ``claim_idle_seconds``, this consumer first re-reads its own
  pending entries (``XREADGROUP ... 0``: a crash of a consumer with the same name), then takes
  over entries another consumer left pending for longer than ``claim_idle_seconds``
  (``XAUTOCLAIM``, Redis 6.2+), so a crashed consumer's entries are delivered again.
* ``handle`` raising a retryable error → the entry stays pending, the consumer backs off
  (1 s, doubling, at most 30 s) and re-reads its pending entries before new ones.
* An entry without the payload field, or whose payload is not JSON, or that ``handle`` refuses
  permanently (``ConnectorError``), is acked and logged (there is no dead-letter stream): it
  would never succeed.
* ``event_id``: ``entry_id`` (default) uses the stream entry id, so a re-delivered entry
  dedupes in the ledger; ``idempotency_key`` uses the entry's ``idempotency_key`` field (set
  by Flowgate's Redis stream destination; also dedupes a producer's retries); ``none``.

The connection is a ``redis_stream_group`` connection with the Redis stream destination's
connection settings and secret ``password`` (egress-checked addresses only).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from threading import Event
from typing import Any

from connectors import json_codec, redis_stream
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

_BLOCK_MS = 500
_MAX_BACKOFF_SECONDS = 30.0
_NAME_PATTERN = r"^[^\s\x00]+$"

STEP_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "Redis stream consumer group",
    "properties": {
        "stream": {
            "type": "string",
            "title": "Stream",
            "description": "Key of the stream, e.g. orders:created (created if missing).",
            "minLength": 1,
            "maxLength": 512,
            "pattern": _NAME_PATTERN,
        },
        "group": {
            "type": "string",
            "title": "Consumer group",
            "description": "Created if missing. Each group gets every entry once.",
            "minLength": 1,
            "maxLength": 255,
            "pattern": _NAME_PATTERN,
        },
        "consumer": {
            "type": "string",
            "title": "Consumer name",
            "description": "Name of this consumer in the group; defaults to the host name.",
            "minLength": 1,
            "maxLength": 255,
            "pattern": _NAME_PATTERN,
        },
        "start": {
            "enum": ["new", "all"],
            "title": "Start at",
            "description": "For a new group: only entries added from now on, or the whole stream.",
            "default": "new",
        },
        "payload_field": {
            "type": "string",
            "title": "Payload field",
            "description": "Entry field holding the message as JSON.",
            "default": "payload",
            "pattern": r"^[A-Za-z0-9_.:-]{1,64}$",
        },
        "count": {
            "type": "integer",
            "title": "Batch size",
            "description": "Entries read per XREADGROUP.",
            "default": 10,
            "minimum": 1,
            "maximum": 1000,
        },
        "claim_idle_seconds": {
            "type": "integer",
            "title": "Claim after (seconds)",
            "description": "Entries another consumer left unacknowledged this long are taken "
            "over (a crashed consumer).",
            "default": 60,
            "minimum": 1,
            "maximum": 86400,
        },
        "event_id": {
            "enum": ["entry_id", "idempotency_key", "none"],
            "title": "Event id",
            "default": "entry_id",
        },
        "business_key": {
            "type": "string",
            "title": "Business key",
            "description": "JSONata expression naming the business object.",
            "minLength": 1,
            "maxLength": 1000,
        },
    },
    "required": ["stream", "group"],
    "additionalProperties": False,
}

SPEC = ConnectorSpec(
    key="redis_stream_group",
    name="Redis stream (consumer group)",
    kind="trigger",
    version=1,
    description="Start the flow for each entry read from a Redis stream by a consumer group; "
    "the entry is acknowledged only after its run is recorded.",
    connection_schema=redis_stream.CONNECTION_SCHEMA,
    secret_fields=("password",),
    step_schema=STEP_SCHEMA,
    requires_connection=True,
)


def step_settings(step_config: Mapping[str, Any]) -> dict[str, Any]:
    problems = config_problems(STEP_SCHEMA, dict(step_config))
    if problems:
        detail = "; ".join(f"{path or '/'} {message}" for path, message in problems)
        raise ConnectorError(f"the Redis stream group trigger config is invalid: {detail}")
    step = apply_defaults(STEP_SCHEMA, step_config)
    step.setdefault("consumer", f"{socket.gethostname()}-{os.getpid()}")
    return step


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class RedisStreamGroupTrigger(Trigger):
    spec = SPEC

    def accept(self, ctx: ConnectorContext, request: InboundRequest) -> list[Any]:
        raise ConnectorError("a Redis stream group trigger reads its stream; it takes no requests")

    def check(self, ctx: ConnectorContext) -> CheckResult:
        return redis_stream.RedisStreamDestination().check(ctx)

    def consume(self, ctx: ConnectorContext, handle: EventHandler, stop_event: Event) -> None:
        step = step_settings(ctx.step_config)
        settings, redact = redis_stream._settings(ctx)
        backoff = 1.0
        while not stop_event.is_set():
            client = redis_stream._client(ctx, settings)
            try:
                self._create_group(client, step)
                self._consume_on(ctx, client, step, handle, stop_event)
                backoff = 1.0
            except Exception as exc:
                error = redis_stream._error(exc, settings, redact)
                if not error.retryable:
                    raise error from exc
                ctx.logger.warning(
                    "connector.redis_stream_group.connection_lost error=%s retry_in=%gs",
                    error.message,
                    backoff,
                )
                stop_event.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
            finally:
                redis_stream._close(client)

    def _create_group(self, client: Any, step: Mapping[str, Any]) -> None:
        from redis.exceptions import ResponseError

        start = "$" if step["start"] == "new" else "0"
        try:
            client.xgroup_create(step["stream"], step["group"], id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _consume_on(
        self,
        ctx: ConnectorContext,
        client: Any,
        step: Mapping[str, Any],
        handle: EventHandler,
        stop_event: Event,
    ) -> None:
        stream, group, consumer = step["stream"], step["group"], step["consumer"]
        claim_every = float(step["claim_idle_seconds"])
        ctx.logger.info(
            "connector.redis_stream_group.consuming stream=%s group=%s consumer=%s",
            stream,
            group,
            consumer,
        )
        recover, next_claim, failures = True, 0.0, 0
        while not stop_event.is_set():
            if time.monotonic() >= next_claim:
                recover, next_claim = True, time.monotonic() + claim_every
            if recover:
                # Our own pending entries first (a previous life of this consumer, or a
                # handle that failed), then the entries of consumers that went quiet.
                entries = self._read(client, step, "0")
                if not entries:
                    entries = self._claim(client, step)
                    recover = bool(entries)
            else:
                entries = self._read(client, step, ">", block=_BLOCK_MS)
            for entry_id, fields in entries:
                if not self._one(ctx, client, step, entry_id, fields, handle):
                    failures += 1
                    recover = True
                    stop_event.wait(min(2.0 ** (failures - 1), _MAX_BACKOFF_SECONDS))
                    break
                failures = 0
                if stop_event.is_set():
                    break

    def _read(
        self, client: Any, step: Mapping[str, Any], start: str, block: int | None = None
    ) -> list[tuple[Any, Any]]:
        reply = client.xreadgroup(
            step["group"],
            step["consumer"],
            {step["stream"]: start},
            count=step["count"],
            block=block,
        )
        if not reply:
            return []
        return list(reply[0][1])

    def _claim(self, client: Any, step: Mapping[str, Any]) -> list[tuple[Any, Any]]:
        reply = client.xautoclaim(
            step["stream"],
            step["group"],
            step["consumer"],
            min_idle_time=int(step["claim_idle_seconds"]) * 1000,
            start_id="0-0",
            count=step["count"],
        )
        return list(reply[1]) if reply and len(reply) > 1 else []

    def _one(
        self,
        ctx: ConnectorContext,
        client: Any,
        step: Mapping[str, Any],
        entry_id: Any,
        fields: Any,
        handle: EventHandler,
    ) -> bool:
        """Handle one entry; False when it stays pending for a retry."""
        stream, group = step["stream"], step["group"]
        entry = _text(entry_id)
        fields = {_text(k): v for k, v in (fields or {}).items()}
        try:
            raw = fields.get(step["payload_field"])
            if raw is None:
                raise ConnectorError(f"the entry has no '{step['payload_field']}' field")
            message = _parse(raw)
        except ConnectorError as exc:
            self._drop(ctx, client, step, entry, exc.message)
            return True
        event_id: str | None = None
        if step["event_id"] == "entry_id":
            event_id = f"{stream}:{entry}"
        elif step["event_id"] == "idempotency_key":
            key = fields.get("idempotency_key")
            event_id = _text(key) if key else None
        try:
            handle(message, event_id)
        except ConnectorError as exc:
            if not exc.retryable:
                self._drop(ctx, client, step, entry, exc.message)
                return True
            return self._keep(ctx, step, entry, exc)
        except Exception as exc:
            return self._keep(ctx, step, entry, exc)
        client.xack(stream, group, entry)
        return True

    def _drop(
        self, ctx: ConnectorContext, client: Any, step: Mapping[str, Any], entry: str, why: str
    ) -> None:
        ctx.logger.error(
            "connector.redis_stream_group.rejected stream=%s entry=%s reason=%s",
            step["stream"],
            entry,
            why,
        )
        client.xack(step["stream"], step["group"], entry)

    def _keep(
        self, ctx: ConnectorContext, step: Mapping[str, Any], entry: str, exc: Exception
    ) -> bool:
        ctx.logger.warning(
            "connector.redis_stream_group.retry_later stream=%s entry=%s error=%s",
            step["stream"],
            entry,
            type(exc).__name__,
        )
        return False


def _parse(raw: Any) -> Any:
    try:
        return json_codec.loads_strict(raw if isinstance(raw, bytes) else str(raw))
    except ValueError as exc:
        raise ConnectorError(f"malformed JSON: {exc}") from None


CONNECTOR = RedisStreamGroupTrigger
