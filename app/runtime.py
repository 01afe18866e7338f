"""Per-application singletons built lazily from config: connector registry, secret box,
egress policy, HTTP session and JSONata evaluator. Kept in ``app.extensions`` so tests get
fresh ones per app."""

from __future__ import annotations

import hashlib
from typing import Any

from flask import Flask, current_app

from app.crypto import SecretBox
from connectors.egress import EgressPolicy, guarded_session
from connectors.registry import ConnectorRegistry, load_registry
from flows.mapping import Limits
from flows.sandbox import DEFAULT_MEMORY_MB, SandboxedEvaluator, shared_evaluator


def _cached(app: Flask, name: str, build: Any) -> Any:
    key = f"flowgate.{name}"
    if key not in app.extensions:
        app.extensions[key] = build()
    return app.extensions[key]


def registry(app: Flask | None = None) -> ConnectorRegistry:
    return _cached(app or current_app, "registry", load_registry)


def secret_box(app: Flask | None = None) -> SecretBox:
    app = app or current_app
    return _cached(
        app,
        "secret_box",
        lambda: SecretBox(app.config["SECRET_KEY"], app.config.get("FLOWGATE_SECRET_KEYS") or ()),
    )


def egress_policy(app: Flask | None = None) -> EgressPolicy:
    app = app or current_app
    return _cached(
        app, "egress", lambda: EgressPolicy.from_cidrs(app.config["FLOWGATE_EGRESS_ALLOW"])
    )


def http_session(app: Flask | None = None) -> Any:
    app = app or current_app
    return _cached(app, "http", lambda: guarded_session(egress_policy(app)))


def mapping_evaluator(app: Flask | None = None) -> SandboxedEvaluator:
    """JSONata with hard limits (killable child processes), for the worker and the web.

    Apps with the same settings share one process-wide pool (the tests build many apps);
    no child starts until the first evaluation.
    """
    app = app or current_app
    return _cached(
        app,
        "mapping_evaluator",
        lambda: shared_evaluator(
            Limits(timeout_ms=app.config.get("FLOWGATE_MAPPING_TIMEOUT_MS", 1000)),
            memory_mb=app.config.get("FLOWGATE_MAPPING_MEMORY_MB", DEFAULT_MEMORY_MB),
            pool_size=app.config.get("FLOWGATE_MAPPING_POOL_SIZE", 2),
        ),
    )


def connector_evaluator(app: Flask | None = None) -> Any:
    """``ConnectorContext.evaluate`` for pollers and checks: JSONata in the sandbox, its
    failures reported as the connector's own errors (a poll or check that fails, not a 500)."""
    from connectors.base import ConnectorError
    from flows import mapping

    evaluator = mapping_evaluator(app)

    def evaluate(expression: str, data: Any) -> Any:
        try:
            return evaluator.evaluate(expression, data)
        except mapping.MappingError as exc:
            raise ConnectorError(f"{exc.code}: {exc.message}") from None

    return evaluate


def idempotency_prefix(app: Flask | None = None) -> str:
    """Derived from the secret key so two installations never share idempotency keys
    (a destination would otherwise treat a fresh install's run 1 as a duplicate)."""
    app = app or current_app
    digest = hashlib.sha256(("idempotency:" + app.config["SECRET_KEY"]).encode()).hexdigest()
    return "fg" + digest[:10]


def delivery_gate(app: Flask | None = None) -> Any:
    """The Redis-backed circuit breaker and limits shared by every worker (app.gates)."""
    from app.gates import GateLimits, RedisDeliveryGate
    from app.models import Connection
    from app.redis_conn import get_redis

    app = app or current_app

    def limits_for(connection_id: int) -> GateLimits:
        from app.extensions import db
        from app.stores import batch_limits

        known = batch_limits(connection_id)  # read by the worker's resolver for this batch
        if known is not None:
            return GateLimits(*known)
        row = db.session.get(Connection, connection_id)
        if row is None:
            return GateLimits()
        return GateLimits(row.rate_limit_per_second, row.max_in_flight)

    return _cached(
        app,
        "gate",
        lambda: RedisDeliveryGate(
            get_redis(app),
            limits_for,
            threshold=app.config["FLOWGATE_BREAKER_THRESHOLD"],
            cooldown_seconds=app.config["FLOWGATE_BREAKER_COOLDOWN_SECONDS"],
            namespace=f"flowgate:{idempotency_prefix(app)}:{app.config['FLOWGATE_QUEUE_NAME']}",
        ),
    )
