"""The /api/v1 JSON API, the webhook intake and health, all documented in OpenAPI."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_smorest import Blueprint

from app.auth import authenticate
from app.extensions import api

API_PREFIX = "/api/v1"


def protected_blueprint(name: str, import_name: str, description: str, **kwargs: Any) -> Blueprint:
    """A blueprint under /api/v1 whose every view needs a signed-in user or API token."""
    bp = Blueprint(name, import_name, url_prefix=API_PREFIX, description=description, **kwargs)
    bp.before_request(_authenticate_request)
    return bp


def _authenticate_request() -> None:
    authenticate()  # raises 401/403 problems; returning None lets the view run


def register_api(app: Flask) -> None:
    from app import demo
    from app.api import (
        audit,
        auth,
        connections,
        connectors,
        dashboard,
        dead_letters,
        flows,
        health,
        hooks,
        landscape,
        mappings,
        metrics,
        runs,
        schemas,
        systems,
    )

    api.init_app(app)
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": "flask users token"}
    )
    api.spec.options["security"] = [{"bearerAuth": []}]
    for module in (
        auth,
        flows,
        connections,
        connectors,
        runs,
        dead_letters,
        mappings,
        schemas,
        systems,
        audit,
        landscape,
        dashboard,
    ):
        api.register_blueprint(module.bp)
    api.register_blueprint(hooks.bp)
    api.register_blueprint(health.bp)
    api.register_blueprint(metrics.bp)
    api.register_blueprint(demo.bp)
    from app.api import governance  # review threads, notifications, users, export/import

    api.register_blueprint(governance.bp)
    from app.api import admin  # users and settings (admins)

    api.register_blueprint(admin.bp)
    from app.api import editor  # the flow editor: test runs and samples

    api.register_blueprint(editor.bp)
    from app.api import alerts, reconciliation  # alerts, MTTD/MTTR, reconciliation

    api.register_blueprint(alerts.bp)
    api.register_blueprint(reconciliation.bp)
    from app.api import trigger_state  # schedule/poll/webhook state of a flow's trigger

    api.register_blueprint(trigger_state.bp)
