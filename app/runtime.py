"""Per-application singletons built lazily from config: connector registry, secret box,
egress policy and HTTP session. Kept in ``app.extensions`` so tests get fresh ones per app."""

from __future__ import annotations

import hashlib
from typing import Any

from flask import Flask, current_app

from app.crypto import SecretBox
from connectors.egress import EgressPolicy, guarded_session
from connectors.registry import ConnectorRegistry, load_registry


def _cached(app: Flask, name: str, build: Any) -> Any:
    key = f"flowgate.{name}"
    if key not in app.extensions:
        app.extensions[key] = build()
    return app.extensions[key]


def registry(app: Flask | None = None) -> ConnectorRegistry:
    return _cached(app or current_app, "registry", load_registry)


def secret_box(app: Flask | None = None) -> SecretBox:
    app = app or current_app
    return _cached(app, "secret_box", lambda: SecretBox(app.config["SECRET_KEY"]))


def egress_policy(app: Flask | None = None) -> EgressPolicy:
    app = app or current_app
    return _cached(
        app, "egress", lambda: EgressPolicy.from_cidrs(app.config["FLOWGATE_EGRESS_ALLOW"])
    )


def http_session(app: Flask | None = None) -> Any:
    app = app or current_app
    return _cached(app, "http", lambda: guarded_session(egress_policy(app)))


def idempotency_prefix(app: Flask | None = None) -> str:
    """Derived from the secret key so two installations never share idempotency keys
    (a destination would otherwise treat a fresh install's run 1 as a duplicate)."""
    app = app or current_app
    digest = hashlib.sha256(("idempotency:" + app.config["SECRET_KEY"]).encode()).hexdigest()
    return "fg" + digest[:10]
