"""First-start demo data: users, systems, the demo OMS connection and a live demo flow."""

from __future__ import annotations

import json
import os
import secrets
from importlib import resources
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select

from app import runtime
from app.demo import demo_api_key
from app.extensions import db
from app.models import Connection, Flow, FlowVersion, Review, System, VersionStatus
from app.models._types import utcnow
from app.services import audit, users
from flows.definition import content_hash

DEMO_USERS = (
    ("analyst@flowgate.local", "analyst", "Ada Analyst"),
    ("owner@flowgate.local", "owner", "Olu Owner"),
    ("admin@flowgate.local", "admin", "Abe Admin"),
)
DEMO_SYSTEMS = (
    ("Web shop", "commerce", "high"),
    ("OMS", "oms", "critical"),
    ("ERP", "erp", "critical"),
    ("WMS", "wms", "high"),
)
DEMO_FLOW_SLUG = "web-orders-oms"
ORDER_TO_OMS = """{
  'orderRef': 'WEB-' & $string(order_number),
  'orderedAt': created_at,
  'currency': currency,
  'customer': {
    'email': email,
    'name': customer.first_name & ' ' & customer.last_name
  },
  'shipTo': {
    'name': shipping_address.first_name & ' ' & shipping_address.last_name,
    'street': shipping_address.address1,
    'city': shipping_address.city,
    'postcode': shipping_address.zip,
    'country': shipping_address.country_code
  },
  'lines': [line_items.{
    'sku': sku,
    'quantity': quantity,
    'unitPrice': $number(price)
  }],
  'total': $number(total_price)
}"""


def sample_order() -> dict[str, Any]:
    text = resources.files("app.demo").joinpath("commerce-order-created.json").read_text("utf-8")
    return json.loads(text)


def demo_definition(connection_id: int) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "trigger": {"type": "webhook", "config": {"business_key": "$string(order_number)"}},
        "steps": [
            {"id": "only_paid", "type": "filter", "condition": "financial_status = 'paid'"},
            {"id": "to_oms_order", "type": "map", "expression": ORDER_TO_OMS},
            {
                "id": "send_oms",
                "type": "deliver",
                "connector": "http",
                "connection_id": connection_id,
                "config": {"method": "POST", "path": "/orders"},
                "retry": {"max_attempts": 5, "backoff_seconds": 2, "max_backoff_seconds": 60},
            },
        ],
        "edges": [
            {"from": "trigger", "to": "only_paid"},
            {"from": "only_paid", "to": "to_oms_order"},
            {"from": "to_oms_order", "to": "send_oms"},
        ],
        "layout": {
            "trigger": {"x": 0, "y": 0},
            "only_paid": {"x": 0, "y": 120},
            "to_oms_order": {"x": 0, "y": 240},
            "send_oms": {"x": 0, "y": 360},
        },
        "samples": [sample_order()],
    }


def demo_contract(source_id: int, oms_id: int, owner_id: int, analyst_id: int) -> dict[str, Any]:
    """The demo flow's integration contract (what the review gate requires to submit)."""
    fields = [("orderRef", False), ("customer.email", True), ("customer.name", True)]
    fields += [("shipTo.street", True), ("lines", False), ("total", False)]
    return {
        "source_system_id": source_id,
        "destination_system_ids": [oms_id],
        "business_objects": ["order"],
        "direction": "one_way",
        "trigger": "orders/paid webhook from the web shop",
        "frequency": "event-driven, as orders are paid",
        "volume_per_day": 3000,
        "peak_per_minute": 120,
        "fields": [
            {"destination_system_id": oms_id, "field": name, "pii": pii} for name, pii in fields
        ],
        "sla": {
            "max_latency_seconds": 300,
            "business_hours": {
                "timezone": "Europe/Berlin",
                "days": [0, 1, 2, 3, 4, 5],
                "start": "07:00",
                "end": "22:00",
            },
        },
        "error_policy": {
            "max_attempts": 5,
            "max_age_seconds": 86400,
            "dead_letter_handling": "On-call checks the dead letters, fixes the cause, replays.",
        },
        "business_owner_id": owner_id,
        "technical_owner_id": analyst_id,
        "on_call": {
            "name": "Integration on-call",
            "email": "oncall@flowgate.local",
            "webhook_url": None,
        },
    }


def demo_logins(app: Flask) -> dict[str, str]:
    """Passwords are random per installation and kept in instance/ so every start prints them."""
    path = Path(app.config["INSTANCE_PATH"]) / "demo_logins.json"
    if path.exists():
        return json.loads(path.read_text())
    logins = {email: secrets.token_urlsafe(9) for email, _, _ in DEMO_USERS}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(logins, handle)
    return logins


def seed_demo(app: Flask, base_url: str) -> bool:
    """Create the demo once; returns False when it is already there (a second start)."""
    if db.session.execute(select(Flow.id).where(Flow.slug == DEMO_FLOW_SLUG)).first():
        return False
    passwords = demo_logins(app)
    people = {}
    for email, role, name in DEMO_USERS:
        people[role] = users.find_user(email) or users.create_user(
            email, role, passwords[email], name
        )
    systems = {}
    for name, kind, criticality in DEMO_SYSTEMS:
        systems[name] = System(name=name, kind=kind, criticality=criticality, owner=people["owner"])
        db.session.add(systems[name])
    db.session.flush()

    connection = Connection(
        name="Demo OMS",
        connector_key="http",
        config={
            "base_url": base_url.rstrip("/") + "/demo/oms",
            "headers": {},
            "auth": "api_key",
            "api_key_header": "X-API-Key",
            "timeout_seconds": 10,
        },
        secrets_encrypted=runtime.secret_box(app).encrypt(
            {"api_key": demo_api_key(app.config["SECRET_KEY"])}
        ),
        system_id=systems["OMS"].id,
    )
    db.session.add(connection)
    db.session.flush()

    flow = Flow(
        name="Web orders → OMS",
        slug=DEMO_FLOW_SLUG,
        description="Paid web-shop orders are mapped to the OMS order format and posted to it.",
        owner=people["owner"],
    )
    definition = demo_definition(connection.id)
    now = utcnow()
    version = FlowVersion(
        flow=flow,
        number=1,
        definition=definition,
        contract=demo_contract(
            systems["Web shop"].id, systems["OMS"].id, people["owner"].id, people["analyst"].id
        ),
        status=VersionStatus.LIVE.value,
        revision=1,
        content_hash=content_hash(definition),
        author=people["analyst"],
        contributor_ids=[people["analyst"].id],
        approved_by=people["owner"],
        submitted_at=now,
        decided_at=now,
        live_since=now,
    )
    db.session.add_all([flow, version])
    db.session.add(
        Review(
            version=version,
            reviewer=people["owner"],
            decision="approved",
            comment="Demo flow, approved at seed time.",
        )
    )
    db.session.flush()
    audit.record(None, "demo.seeded", "flow", flow.id, version=1)
    db.session.commit()
    return True
