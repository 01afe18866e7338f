"""Demo data and the built-in demo OMS (a stand-in destination that stores what it gets).

The demo OMS honours ``Idempotency-Key`` the way real order APIs do: a repeated key is
answered with the original order and counted, so duplicates are visible, never stored twice.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from flask import current_app, request
from flask_smorest import Blueprint
from markupsafe import escape
from sqlalchemy import func, select

from app.errors import ServiceError
from app.extensions import db
from app.models import DemoOmsOrder

bp = Blueprint("demo_oms", __name__, url_prefix="/demo/oms", description="Built-in demo OMS")


class DemoUnauthorized(ServiceError):
    status, title = 401, "Unauthorized"


def demo_api_key(secret_key: str) -> str:
    """The demo OMS's API key, derived so the seed and the endpoint agree without storage."""
    return hmac.new(secret_key.encode(), b"demo-oms-api-key", hashlib.sha256).hexdigest()[:32]


def _check_key() -> None:
    expected = demo_api_key(current_app.config["SECRET_KEY"])
    if not hmac.compare_digest(request.headers.get("X-API-Key", ""), expected):
        raise DemoUnauthorized("the demo OMS needs its API key in X-API-Key")


def _outage_key() -> str:
    from app import runtime

    return f"flowgate:{runtime.idempotency_prefix()}:demo:oms_down"


def oms_down() -> bool:
    """Is the demo OMS in a simulated outage (answering 503)? Shared by every web process."""
    from app.redis_conn import get_redis

    return bool(get_redis(current_app).exists(_outage_key()))


def set_oms_outage(down: bool) -> None:
    from app.redis_conn import get_redis

    client = get_redis(current_app)
    if down:
        client.set(_outage_key(), "1")
    else:
        client.delete(_outage_key())


class DemoOutage(ServiceError):
    status, title = 503, "Service unavailable"


@bp.get("/outage")
@bp.response(200)
@bp.doc(security=[])
def get_outage() -> dict[str, bool]:
    """Whether the demo OMS is simulating an outage."""
    return {"down": oms_down()}


@bp.post("/outage")
@bp.response(200)
def post_outage() -> dict[str, bool]:
    """Stop (``{"down": true}``) or restart (``{"down": false}``) the demo OMS: while down it
    answers every order with 503, so alerts, retries and replay can be tried (owners and
    admins only, audited)."""
    from app.auth import authenticate
    from app.errors import Forbidden
    from app.services import audit

    actor = authenticate()
    if actor.role not in ("owner", "admin"):
        raise Forbidden("only an owner or an admin can stop or restart the demo OMS")
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("down"), bool):
        raise ServiceError('send {"down": true} or {"down": false}')
    set_oms_outage(body["down"])
    audit.record(actor, "demo.oms_outage", "demo", "oms", down=body["down"])
    db.session.commit()
    return {"down": body["down"]}


@bp.post("/orders")
@bp.response(201)
@bp.alt_response(200, description="Idempotent replay: the original order")
@bp.doc(security=[])
def receive_order() -> tuple[dict[str, Any], int]:
    """Store an order (the demo destination of the "Web orders → OMS" flow)."""
    if oms_down():
        raise DemoOutage("the demo OMS is down (simulated outage: POST /demo/oms/outage)")
    _check_key()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ServiceError("the demo OMS takes a JSON object")
    key = request.headers.get("Idempotency-Key")
    if key:
        existing = db.session.execute(
            select(DemoOmsOrder).where(DemoOmsOrder.idempotency_key == key)
        ).scalar_one_or_none()
        if existing is not None:
            existing.requests_seen += 1
            db.session.commit()
            return {"id": existing.id, "replayed": True}, 200
    order = DemoOmsOrder(idempotency_key=key, body=body)
    db.session.add(order)
    db.session.commit()
    return {"id": order.id, "replayed": False}, 201


@bp.get("/orders")
@bp.response(200)
@bp.doc(security=[])
def list_orders() -> dict[str, Any]:
    """Orders the demo OMS holds, newest first, with how often each key was sent."""
    rows = db.session.execute(
        select(DemoOmsOrder).order_by(DemoOmsOrder.id.desc()).limit(200)
    ).scalars()
    total = db.session.execute(select(func.count(DemoOmsOrder.id))).scalar_one()
    items = [
        {
            "id": r.id,
            "idempotency_key": r.idempotency_key,
            "requests_seen": r.requests_seen,
            "received_at": r.received_at.isoformat(),
            "body": r.body,
        }
        for r in rows
    ]
    return {"items": items, "total": total}


@bp.get("/", strict_slashes=False)  # /demo/oms (the seeded base URL) answers, not a 308
@bp.doc(security=[])
def show_orders() -> tuple[str, int, dict[str, str]]:
    """A plain page showing what the demo OMS received."""
    rows = db.session.execute(
        select(DemoOmsOrder).order_by(DemoOmsOrder.id.desc()).limit(50)
    ).scalars()
    items = "".join(
        f"<li><b>#{r.id}</b> {escape(str((r.body or {}).get('orderRef', '')))} · "
        f"{r.requests_seen} request(s) · {escape(r.received_at.isoformat())}"
        f"<pre>{escape(current_app.json.dumps(r.body, indent=2))}</pre></li>"
        for r in rows
    )
    html = (
        "<!doctype html><meta charset=utf-8><title>Demo OMS</title>"
        "<style>body{font:15px system-ui;margin:2rem}pre{background:#f4f4f4;padding:.5rem}</style>"
        "<h1>Demo OMS</h1><p>Orders received (newest first):</p>"
        f"<ol>{items or '<i>none yet</i>'}</ol>"
    )
    return html, 200, {"Content-Type": "text/html; charset=utf-8"}
