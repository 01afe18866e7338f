"""Inbound webhook trigger: each accepted request becomes one message for the flow.

The web layer receives the request, parses the JSON body and stores it durably before
calling ``accept``; this connector only declares its options and maps request to messages.
Signature verification (Shopify, Stripe, GitHub, generic HMAC) is a later issue.
"""

from __future__ import annotations

from typing import Any

from connectors.base import ConnectorContext, ConnectorSpec, InboundRequest, Trigger

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
            "pattern": r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
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
    },
    "additionalProperties": False,
}

SPEC = ConnectorSpec(
    key="webhook",
    name="Webhook",
    kind="trigger",
    version=1,
    description="Start the flow when a JSON request arrives at the flow's webhook URL.",
    step_schema=STEP_SCHEMA,
    requires_connection=False,
)


class WebhookTrigger(Trigger):
    """One inbound request, one message: the parsed JSON body as it arrived."""

    spec = SPEC

    def accept(self, ctx: ConnectorContext, request: InboundRequest) -> list[Any]:
        """Return the request's parsed payload as the only message."""
        return [request.payload]


CONNECTOR = WebhookTrigger
