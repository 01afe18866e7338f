"""The connector contract: a declarative spec plus ``check()`` and ``send()`` / ``accept()``.

Shape taken from Airbyte's spec/check/write verbs and redash's destination registry: a
connector declares its configuration once (JSON Schema), the API validates against it, the
editor builds its form from it and secrets are masked from it. Connectors never reach for
globals; everything they need arrives in a ``ConnectorContext``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

ConnectorKind = Literal["trigger", "destination"]
# An event trigger's callback: handle(message, event_id) records the run and raises to refuse.
EventHandler = Callable[[Any, "str | None"], Any]
# How a destination avoids duplicate effects when a delivery is retried: by an idempotency key
# the remote side honours, by an upsert on a natural key, or not at all (reviewers see this).
Idempotency = Literal["key", "upsert", "none"]


@dataclass(frozen=True)
class ConnectorSpec:
    """Everything the API, the validator and the editor need to know about a connector."""

    key: str
    name: str
    kind: ConnectorKind
    version: int
    description: str
    # Schema of a Connection's non-secret config (base URL, auth type, timeout...).
    connection_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    # Names of secret fields a Connection may hold; stored encrypted, never returned.
    secret_fields: tuple[str, ...] = ()
    # Schema of the per-step config in a flow definition (method, path... / trigger options).
    step_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    # Destinations only: whether the step needs a connection_id.
    requires_connection: bool = True
    idempotency: Idempotency = "none"

    def to_dict(self) -> dict[str, Any]:
        """The public catalogue entry (``GET /api/v1/connectors``): no code, no secrets."""
        return {
            "key": self.key,
            "name": self.name,
            "kind": self.kind,
            "version": self.version,
            "description": self.description,
            "connection_schema": dict(self.connection_schema),
            "secret_fields": list(self.secret_fields),
            "step_schema": dict(self.step_schema),
            "requires_connection": self.requires_connection,
            "idempotency": self.idempotency,
        }


@dataclass
class ConnectorContext:
    """The only doorway a connector has to the world.

    ``http`` is a ``requests.Session`` whose connections pass the egress policy; connectors
    must use it (never ``requests.get``) so that no outbound call escapes the allowlist.
    """

    connection_config: Mapping[str, Any]
    secrets: Mapping[str, str]
    step_config: Mapping[str, Any]
    logger: logging.Logger
    http: Any  # requests.Session built by connectors.egress.guarded_session
    timeout_seconds: float = 10.0
    # connectors.egress.EgressPolicy: non-HTTP connectors check every host they connect to
    # with connectors.egress.checked_addresses(ctx.egress, host, port).
    egress: Any = None
    # evaluate(expression, data) -> result: JSONata through the flows layer's sandboxed
    # evaluator (poll triggers extract items and cursors with it; connectors never import
    # a JSONata library). Raises ConnectorError when the expression fails.
    evaluate: Callable[[str, Any], Any] | None = None


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str


@dataclass(frozen=True)
class SendResult:
    """What a destination answered: kept on the Delivery row (excerpt is already truncated)."""

    status_code: int | None
    response_excerpt: str = ""


@dataclass(frozen=True)
class InboundRequest:
    """An inbound trigger request, already parsed as JSON by the web layer."""

    headers: Mapping[str, str]
    body: bytes
    payload: Any


class ConnectorError(Exception):
    """A permanent failure: retrying the same message will not help (4xx, bad config)."""

    retryable: ClassVar[bool] = False

    def __init__(
        self, message: str, *, status_code: int | None = None, response_excerpt: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.response_excerpt = response_excerpt


class RetryableConnectorError(ConnectorError):
    """A transient failure (5xx, 429, timeout, connection refused): the engine may retry.

    ``ambiguous=True`` marks a failure after the request may have been sent (timeout or
    connection reset while waiting for the answer), as opposed to a clear pre-send failure
    or an explicit answer."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        response_excerpt: str = "",
        retry_after_seconds: float | None = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(message, status_code=status_code, response_excerpt=response_excerpt)
        self.retry_after_seconds = retry_after_seconds
        # True when the failure came after the message may have reached the destination
        # (a timeout or a dropped connection once the request/DATA was sent): a retry could
        # deliver it twice, so the engine does not retry destinations with idempotency "none".
        self.ambiguous = ambiguous


class Connector(ABC):
    """Base of every connector; subclasses set ``spec``."""

    spec: ClassVar[ConnectorSpec]

    def check(self, ctx: ConnectorContext) -> CheckResult:
        """Test the connection (the editor's **Test connection** button)."""
        return CheckResult(ok=True, message="nothing to check")


class Destination(Connector):
    """A connector that delivers one message per call."""

    @abstractmethod
    def send(self, ctx: ConnectorContext, message: Any, *, idempotency_key: str) -> SendResult:
        """Deliver ``message`` once; the same ``idempotency_key`` is sent on every attempt.

        Raise ``RetryableConnectorError`` for transient failures and ``ConnectorError`` for
        permanent ones; the engine decides what to do next.
        """


class Trigger(Connector):
    """A connector that turns an inbound event into messages for a flow."""

    @abstractmethod
    def accept(self, ctx: ConnectorContext, request: InboundRequest) -> list[Any]:
        """Return the messages carried by ``request`` (usually one), or raise ConnectorError."""


@dataclass(frozen=True)
class PolledItem:
    """One item a poll found: ``id`` (declared by the flow) dedupes it across polls."""

    id: str
    message: Any


@dataclass(frozen=True)
class PollPage:
    """One page of a poll: its items, the state to resume from once their runs are
    committed, and whether another page can be read right away."""

    items: list[PolledItem]
    state: Any
    more: bool = False


class Poller(Trigger):
    """A trigger the scheduler fires by reading a source page by page from a saved state."""

    def accept(self, ctx: ConnectorContext, request: InboundRequest) -> list[Any]:
        raise ConnectorError(f"{self.spec.key} is fired by the scheduler, not by a request")

    @abstractmethod
    def poll(self, ctx: ConnectorContext, state: Any) -> PollPage:
        """Read the page after ``state`` (None on the first poll).

        Must not change anything at the source: the caller records the items' runs, and only
        then saves ``page.state``; a crash in between makes the next poll read it again.
        """
