"""A complete integration contract for tests that submit a flow version (the review gate
refuses a submission without one). Runs inside the ``app`` fixture's app context."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.models import System, User


def _system(name: str, kind: str) -> int:
    row = db.session.execute(select(System).where(System.name == name)).scalar_one_or_none()
    if row is None:
        row = System(name=name, kind=kind)
        db.session.add(row)
        db.session.commit()
    return row.id


def contract_between(
    source_id: int, destination_id: int, owner_id: int, **overrides: Any
) -> dict[str, Any]:
    """A complete contract for an order flow from one system to another, ``owner_id`` being
    both business and technical owner (also used by the benchmarks, through the API)."""
    contract: dict[str, Any] = {
        "source_system_id": source_id,
        "destination_system_ids": [destination_id],
        "business_objects": ["order"],
        "direction": "one_way",
        "trigger": "order created in the shop (webhook)",
        "frequency": "event-driven",
        "volume_per_day": 2000,
        "peak_per_minute": 60,
        "fields": [
            {"destination_system_id": destination_id, "field": "orderRef", "pii": False},
        ],
        "sla": {
            "max_latency_seconds": 60,
            "business_hours": {
                "timezone": "Europe/Berlin",
                "days": [0, 1, 2, 3, 4],
                "start": "08:00",
                "end": "20:00",
            },
        },
        "error_policy": {
            "max_attempts": 5,
            "max_age_seconds": 86400,
            "dead_letter_handling": "on-call replays after fixing the cause",
        },
        "business_owner_id": owner_id,
        "technical_owner_id": owner_id,
        "on_call": {
            "name": "Integration on-call",
            "email": "oncall@example.test",
            "webhook_url": "https://pager.example.test/hook",
        },
    }
    contract.update(overrides)
    return contract


def complete_contract(**overrides: Any) -> dict[str, Any]:
    """Source "Test shop" → destination "Test OMS"; owners: the first user (by id)."""
    source = _system("Test shop", "commerce")
    destination = _system("Test OMS", "oms")
    owner_id = db.session.execute(select(User.id).order_by(User.id).limit(1)).scalar_one()
    return contract_between(source, destination, owner_id, **overrides)
