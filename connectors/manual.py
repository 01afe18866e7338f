"""Manual trigger: the flow runs only when someone asks (``POST /api/v1/flows/<id>/run``).

No options. The payload given in the request is the message, as it is. Owners and admins can
run any live flow by hand this way, whatever its trigger (support: re-run a message); a flow
whose trigger is ``manual`` has no other way in.
"""

from __future__ import annotations

from typing import Any

from connectors.base import ConnectorContext, ConnectorSpec, InboundRequest, Trigger

STEP_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "Manual",
    "properties": {},
    "additionalProperties": False,
}

SPEC = ConnectorSpec(
    key="manual",
    name="Manual",
    kind="trigger",
    version=1,
    description="Start the flow by hand with a given payload (POST /api/v1/flows/<id>/run; "
    "owners and admins), for tests and support.",
    step_schema=STEP_SCHEMA,
    requires_connection=False,
)


class ManualTrigger(Trigger):
    """One request, one message: the payload exactly as given."""

    spec = SPEC

    def accept(self, ctx: ConnectorContext, request: InboundRequest) -> list[Any]:
        return [request.payload]


CONNECTOR = ManualTrigger
