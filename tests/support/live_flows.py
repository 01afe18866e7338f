"""Live flows and connections written straight to the database, for trigger tests that are
about firing, not about the review gate (which has its own tests)."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import timedelta
from typing import Any

from app import runtime
from app.extensions import db
from app.models import Connection, Flow, FlowVersion, VersionStatus
from app.models._types import utcnow


def make_connection(
    connector_key: str, config: dict[str, Any], secrets: dict[str, str] | None = None
) -> int:
    row = Connection(
        name=f"{connector_key}-{uuid.uuid4().hex[:8]}",
        connector_key=connector_key,
        config=config,
        secrets_encrypted=runtime.secret_box().encrypt(secrets or {}),
    )
    db.session.add(row)
    db.session.commit()
    return row.id


def make_live_flow(definition: dict[str, Any], name: str = "Test flow") -> tuple[Flow, FlowVersion]:
    slug = f"{name.lower().replace(' ', '-')}-{uuid.uuid4().hex[:6]}"
    flow = Flow(name=name, slug=slug)
    db.session.add(flow)
    db.session.flush()
    version = FlowVersion(
        flow_id=flow.id,
        number=1,
        definition=definition,
        status=VersionStatus.LIVE.value,
        content_hash=hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest(),
        live_since=utcnow() - timedelta(hours=1),
    )
    db.session.add(version)
    db.session.commit()
    return flow, version


def deliver_to_sink(trigger: dict[str, Any], sink_url: str) -> dict[str, Any]:
    """A flow document: ``trigger`` -> one http delivery to ``sink_url`` + /items."""
    connection_id = make_connection("http", {"base_url": sink_url})
    return {
        "schema_version": 1,
        "trigger": trigger,
        "steps": [
            {
                "id": "send",
                "type": "deliver",
                "connector": "http",
                "connection_id": connection_id,
                "config": {"method": "POST", "path": "/items"},
            }
        ],
        "edges": [{"from": "trigger", "to": "send"}],
    }
