"""What a flow's trigger is doing right now (``GET /api/v1/flows/<id>/trigger``).

Read-only. The trigger is the live version's (else the newest version's, flagged not live).
Schedules: the next tick and the last one fired; polls: their ``PollState`` row; webhooks:
the address to send to. A poll cursor is never returned as such (it may be an opaque token
an API handed out): only a short summary of its shape and a fingerprint that shows it move.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from flask import current_app, request
from sqlalchemy import select

from app.extensions import db
from app.models import FlowVersion, PollState, VersionStatus
from app.services import triggers
from app.services.flows import get_flow, version_with_status
from app.services.polling import POLL_TYPES
from connectors.schedule import next_ticks

_SUMMARY_KEYS = 10


def cursor_summary(cursor: Any) -> str | None:
    """ "object with keys id, watermark (#1a2b3c4d)", "string of 48 chars (#…)": the shape and
    a fingerprint, never the value."""
    if cursor is None:
        return None
    digest = hashlib.sha256(
        json.dumps(cursor, sort_keys=True, default=str).encode("utf-8")
    ).hexdigest()[:8]
    if isinstance(cursor, dict):
        keys = sorted(str(k) for k in cursor)
        shown = ", ".join(k[:40] for k in keys[:_SUMMARY_KEYS])
        more = f" and {len(keys) - _SUMMARY_KEYS} more" if len(keys) > _SUMMARY_KEYS else ""
        shape = f"object with keys {shown}{more}" if keys else "empty object"
    elif isinstance(cursor, str):
        shape = f"string of {len(cursor)} chars"
    elif isinstance(cursor, list):
        shape = f"list of {len(cursor)} items"
    elif isinstance(cursor, bool):
        shape = "boolean"
    elif isinstance(cursor, int | float):
        shape = "number"
    else:
        shape = type(cursor).__name__
    return f"{shape} (#{digest})"


def _version(flow_id: int) -> tuple[FlowVersion | None, bool]:
    flow = get_flow(flow_id)
    live = version_with_status(flow, VersionStatus.LIVE)
    if live is not None:
        return live, True
    newest = max(flow.versions, key=lambda v: v.number, default=None)
    return newest, False


def _state(flow_id: int) -> PollState | None:
    return db.session.execute(
        select(PollState).where(PollState.flow_id == flow_id)
    ).scalar_one_or_none()


def _webhook_url(slug: str) -> str:
    base = current_app.config.get("FLOWGATE_PUBLIC_URL") or request.url_root
    return str(base).rstrip("/") + f"/hooks/{slug}"


def trigger_state(flow_id: int, now: datetime | None = None) -> dict[str, Any]:
    flow = get_flow(flow_id)
    version, live = _version(flow_id)
    trigger = dict((version.definition or {}).get("trigger") or {}) if version else {}
    kind = trigger.get("type")
    config = trigger.get("config") or {}
    view: dict[str, Any] = {
        "flow_id": flow.id,
        "type": kind,
        "version": version.number if version else None,
        "live": live,
        "schedule": None,
        "poll": None,
        "webhook": None,
    }
    state = _state(flow.id)
    if kind == triggers.SCHEDULE_KIND:
        now = now or datetime.now(UTC)
        next_tick = None
        if live and config.get("cron"):
            try:
                next_tick = next_ticks(str(config["cron"]), config.get("timezone") or "UTC", now)[0]
            except Exception:  # a stored cron that no longer parses: show no next tick
                next_tick = None
        view["schedule"] = {
            "cron": config.get("cron"),
            "timezone": config.get("timezone") or "UTC",
            "next_tick": next_tick,
            "last_fired": triggers._last_fired(flow.id),
            "paused_reason": state.paused_reason if state else None,
            "paused_at": state.paused_at if state else None,
        }
    elif kind in POLL_TYPES:
        same_source = state is not None and state.trigger_type == kind
        view["poll"] = {
            "interval_seconds": config.get("interval_seconds"),
            "cursor": cursor_summary(state.cursor) if same_source and state else None,
            "polls": state.polls if state else 0,
            "fired": state.fired if state else 0,
            "last_polled_at": state.last_polled_at if state else None,
            "next_poll_at": state.next_poll_at if state else None,
            "last_error": state.last_error if state else None,
            "paused_reason": state.paused_reason if state else None,
            "paused_at": state.paused_at if state else None,
        }
    elif kind == "webhook":
        view["webhook"] = {"url": _webhook_url(flow.slug), "accepting": live}
    return view
