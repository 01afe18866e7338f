"""Inbound webhook trigger: each accepted request becomes one message for the flow.

The web layer receives the request, verifies its signature over the raw body, parses the
JSON and stores it durably; this connector declares its options, checks signatures and maps
a request to messages.

Signing secrets never live in the flow definition: the trigger references a stored
connection of connector ``webhook`` (``secret_fields``: the current signing secret and,
while a sender rotates, the previous one; both are tried). Schemes:

- ``hmac_sha256``: HMAC-SHA256 of the raw body, hex or base64, in a header you name.
- ``shopify``: base64 HMAC-SHA256 of the raw body in ``X-Shopify-Hmac-Sha256``.
- ``github``: ``sha256=<hex>`` in ``X-Hub-Signature-256``.
- ``stripe``: ``Stripe-Signature: t=<unix time>,v1=<hex>[,v1=<hex>...]`` signing
  ``"<t>.<raw body>"``; the timestamp must be within ``tolerance_seconds`` of now.

Comparisons are constant-time (``hmac.compare_digest``) and a missing secret fails closed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from typing import Any

from connectors.base import (
    CheckResult,
    ConnectorContext,
    ConnectorError,
    ConnectorSpec,
    InboundRequest,
    Trigger,
)

SCHEMES = ("none", "hmac_sha256", "shopify", "stripe", "github")
SECRET_FIELDS = ("signing_secret", "previous_signing_secret")
DEFAULT_HEADERS = {
    "shopify": "X-Shopify-Hmac-Sha256",
    "stripe": "Stripe-Signature",
    "github": "X-Hub-Signature-256",
}
DEFAULT_TOLERANCE_SECONDS = 300
_HEADER_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"

SIGNATURE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Signature verification",
    "description": "How the sender signs its requests. Any scheme but 'none' needs the "
    "trigger's connection_id: a webhook connection holding the signing secret.",
    "properties": {
        "scheme": {
            "enum": list(SCHEMES),
            "title": "Scheme",
            "default": "none",
        },
        "header": {
            "type": "string",
            "title": "Signature header",
            "description": "Header carrying the signature. Required for hmac_sha256; the "
            "other schemes default to their sender's header (X-Shopify-Hmac-Sha256, "
            "Stripe-Signature, X-Hub-Signature-256).",
            "pattern": _HEADER_PATTERN,
            "maxLength": 128,
        },
        "encoding": {
            "enum": ["hex", "base64"],
            "title": "Signature encoding",
            "description": "hmac_sha256 only: how the digest is written in the header.",
            "default": "hex",
        },
        "tolerance_seconds": {
            "type": "integer",
            "title": "Timestamp tolerance (seconds)",
            "description": "stripe only: how far the signed timestamp may be from now.",
            "minimum": 1,
            "maximum": 3600,
            "default": DEFAULT_TOLERANCE_SECONDS,
        },
    },
    "required": ["scheme"],
    "additionalProperties": False,
    "if": {"properties": {"scheme": {"const": "hmac_sha256"}}},
    "then": {"required": ["header"]},
}

STEP_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "Webhook",
    "properties": {
        "event_id_header": {
            "type": "string",
            "title": "Event id header",
            "description": "Header whose value identifies a delivery, so a sender's retries "
            "are accepted once, e.g. X-Shopify-Event-Id or X-GitHub-Delivery.",
            "pattern": _HEADER_PATTERN,
            "maxLength": 128,
        },
        "event_id_expression": {
            "type": "string",
            "title": "Event id expression",
            "description": "JSONata expression over the body giving the event id when the "
            "sender puts it in the payload, e.g. id or $string(webhook_id). Used when no "
            "event id header is set.",
            "minLength": 1,
            "maxLength": 1000,
        },
        "business_key": {
            "type": "string",
            "title": "Business key",
            "description": "JSONata expression naming the business object (order number, "
            "SKU, customer e-mail), used to search runs, e.g. $string(order_number).",
            "minLength": 1,
            "maxLength": 1000,
        },
        "signature": SIGNATURE_SCHEMA,
    },
    "additionalProperties": False,
}

# A webhook connection only holds signing secrets; its name says which sender it is for.
CONNECTION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "Webhook signing secrets",
    "properties": {},
    "additionalProperties": False,
}

SPEC = ConnectorSpec(
    key="webhook",
    name="Webhook",
    kind="trigger",
    version=1,
    description="Start the flow when a JSON request arrives at the flow's webhook URL, "
    "optionally verifying the sender's signature (HMAC-SHA256, Shopify, Stripe, GitHub).",
    connection_schema=CONNECTION_SCHEMA,
    secret_fields=SECRET_FIELDS,
    step_schema=STEP_SCHEMA,
    requires_connection=False,
)


class SignatureError(ConnectorError):
    """The request is not proven to come from the sender: the web layer answers 401.

    Messages name the header and the reason, never a secret or an expected signature.
    """


def _now() -> float:
    return time.time()


def scheme_of(config: Mapping[str, Any]) -> str:
    """The signature scheme a trigger config asks for (``none`` when absent)."""
    signature = config.get("signature") or {}
    return str(signature.get("scheme") or "none")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # plain dicts (tests, replays) are case-sensitive; HTTP is not
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    value = (value or "").strip()
    return value or None


def _secrets(ctx: ConnectorContext) -> list[bytes]:
    found = [ctx.secrets.get(name) for name in SECRET_FIELDS]
    return [s.encode("utf-8") for s in found if isinstance(s, str) and s]


def _digest(secret: bytes, data: bytes) -> bytes:
    return hmac.new(secret, data, hashlib.sha256).digest()


def _any_match(candidates: Iterable[bytes], expected: Iterable[bytes]) -> bool:
    """Constant-time compare of every (received, expected) pair; no early exit."""
    matched = False
    expected = list(expected)
    for received in candidates:
        for digest in expected:
            matched |= hmac.compare_digest(received, digest)
    return matched


def _decode(value: str, encoding: str) -> bytes | None:
    """The raw digest written in a header, or None when it is not valid hex/base64."""
    try:
        if encoding == "base64":
            return base64.b64decode(value, validate=True)
        return bytes.fromhex(value)
    except (binascii.Error, ValueError):
        return None


class WebhookTrigger(Trigger):
    """One inbound request, one message: the parsed JSON body as it arrived."""

    spec = SPEC

    def check(self, ctx: ConnectorContext) -> CheckResult:
        """A webhook connection is usable when it holds a signing secret."""
        if _secrets(ctx):
            return CheckResult(ok=True, message="a signing secret is stored")
        return CheckResult(
            ok=False, message="no signing secret is stored: signed webhooks will be refused"
        )

    def verify(self, ctx: ConnectorContext, request: InboundRequest) -> None:
        """Raise ``SignatureError`` unless ``request`` carries a valid signature.

        Works on the raw body bytes only, so the web layer calls it before parsing.
        """
        signature = ctx.step_config.get("signature") or {}
        scheme = scheme_of(ctx.step_config)
        if scheme == "none":
            return
        if scheme not in SCHEMES:
            raise SignatureError(f"unknown signature scheme '{scheme}'")
        header = str(signature.get("header") or DEFAULT_HEADERS.get(scheme, ""))
        if not header:
            raise SignatureError("no signature header is configured")
        secrets = _secrets(ctx)
        if not secrets:  # fail closed: an unconfigured secret never means "accept anything"
            raise SignatureError("no signing secret is configured for this webhook")
        value = _header(request.headers, header)
        if value is None:
            raise SignatureError(f"the '{header}' header is missing")
        if scheme == "stripe":
            tolerance = int(signature.get("tolerance_seconds") or DEFAULT_TOLERANCE_SECONDS)
            self._verify_stripe(header, value, request.body, secrets, tolerance)
            return
        if scheme == "github":
            prefix, _, value = value.partition("=")
            if prefix != "sha256":
                raise SignatureError(f"the '{header}' header must look like 'sha256=<hex>'")
        encoding = {"shopify": "base64", "github": "hex"}.get(
            scheme, str(signature.get("encoding") or "hex")
        )
        received = _decode(value, encoding)
        expected = [_digest(secret, request.body) for secret in secrets]
        if received is None or not _any_match([received], expected):
            raise SignatureError(f"the '{header}' signature does not match the body")

    @staticmethod
    def _verify_stripe(
        header: str, value: str, body: bytes, secrets: list[bytes], tolerance: int
    ) -> None:
        timestamp: str | None = None
        candidates: list[bytes] = []
        for item in value.split(","):
            key, _, part = item.strip().partition("=")
            if key == "t":
                timestamp = part
            elif key == "v1":  # v0 and other schemes are ignored, as Stripe's libraries do
                digest = _decode(part, "hex")
                if digest is not None:
                    candidates.append(digest)
        if not (timestamp and timestamp.isascii() and timestamp.isdigit()) or not candidates:
            raise SignatureError(f"the '{header}' header must look like 't=<time>,v1=<hex>'")
        if len(timestamp) > 12 or abs(_now() - int(timestamp)) > tolerance:
            raise SignatureError(
                f"the '{header}' timestamp is more than {tolerance} seconds from now"
            )
        signed = timestamp.encode("ascii") + b"." + body
        expected = [_digest(secret, signed) for secret in secrets]
        if not _any_match(candidates, expected):
            raise SignatureError(f"the '{header}' signature does not match the body")

    def accept(self, ctx: ConnectorContext, request: InboundRequest) -> list[Any]:
        """Return the request's parsed payload as the only message, once its signature holds.

        The web layer already verified before parsing; checking again keeps ``accept`` safe
        for any other caller.
        """
        self.verify(ctx, request)
        return [request.payload]


CONNECTOR = WebhookTrigger
