"""The webhook trigger: one request, one message; options declared for the editor."""

from __future__ import annotations

import logging

from jsonschema import Draft202012Validator

from connectors.base import ConnectorContext, InboundRequest
from connectors.config import config_problems
from connectors.webhook import SPEC, WebhookTrigger


def test_accept_returns_the_payload_as_one_message() -> None:
    ctx = ConnectorContext({}, {}, {}, logging.getLogger("test"), http=None)
    request = InboundRequest(headers={"X-Event-Id": "e1"}, body=b'{"a": 1}', payload={"a": 1})
    assert WebhookTrigger().accept(ctx, request) == [{"a": 1}]


def test_spec_declares_a_connectionless_trigger() -> None:
    assert (SPEC.key, SPEC.kind, SPEC.requires_connection) == ("webhook", "trigger", False)
    Draft202012Validator.check_schema(SPEC.step_schema)


def test_step_schema_accepts_dedupe_options_and_nothing_else() -> None:
    good = {"event_id_header": "X-Shopify-Event-Id", "business_key": "$string(order_number)"}
    assert config_problems(SPEC.step_schema, good) == []
    assert config_problems(SPEC.step_schema, {}) == []
    bad = {"event_id_header": "X Bad", "secret": "s"}
    assert [p for p, _ in config_problems(SPEC.step_schema, bad)] == [
        "/event_id_header",
        "/secret",
    ]
