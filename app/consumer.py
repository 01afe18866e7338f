"""Event consumers (``python -m app.consumer``): one child process per event subscription.

The supervisor (no arguments) finds every live flow version whose trigger connector can
``consume`` (RabbitMQ queue, Redis stream group) and keeps exactly one child
``python -m app.consumer --flow <id>`` running for each. Every ``FLOWGATE_CONSUMER_RECONCILE
_SECONDS`` (10 s) it reconciles: a newly live flow gets a child, a flow whose live version
changed has its child restarted (a child serves the one version it started with), a flow no
longer live has its child stopped. A child that dies is restarted with a backoff (1 s,
doubling, at most 60 s; reset once it has run for a minute).

A child records each consumed message with ``record_run`` (commit, dedupe by event id,
enqueue) and the connector acknowledges the message only after that returned. SIGTERM /
SIGINT stop consuming; the in-flight message is finished before the child exits. The
supervisor forwards SIGTERM to its children and kills those still running after
``FLOWGATE_CONSUMER_GRACE_SECONDS`` (20 s).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask
from sqlalchemy import select

from app import create_app, runtime
from app.errors import Invalid, ServiceError
from app.extensions import db
from app.logging_setup import configure_logging
from app.models import Connection, Flow, FlowVersion, VersionStatus
from connectors.base import ConnectorContext, ConnectorError, RetryableConnectorError

log = logging.getLogger("flowgate.consumer")

_MAX_RESTART_BACKOFF = 60.0
_HEALTHY_AFTER_SECONDS = 60.0


def _setting(app: Flask, name: str, default: float) -> float:
    return float(app.config.get(name) or os.environ.get(name) or default)


def is_event_trigger(app: Flask, trigger_type: str) -> bool:
    registry = runtime.registry(app)
    if trigger_type not in registry:
        return False
    cls = registry.get(trigger_type)
    return cls.spec.kind == "trigger" and callable(getattr(cls, "consume", None))


def subscriptions(app: Flask) -> dict[int, int]:
    """Live versions with an event trigger: {flow id: live version id}."""
    with app.app_context():
        try:
            rows = db.session.execute(
                select(FlowVersion.flow_id, FlowVersion.id, FlowVersion.definition).where(
                    FlowVersion.status == VersionStatus.LIVE.value
                )
            ).all()
        finally:
            db.session.remove()
    found: dict[int, int] = {}
    for flow_id, version_id, definition in rows:
        trigger_type = str(((definition or {}).get("trigger") or {}).get("type") or "")
        if is_event_trigger(app, trigger_type):
            found[flow_id] = version_id
    return found


# --- child: one subscription ---


class NotServable(Exception):
    """The flow has no live event-triggered version (any more)."""


def _load(app: Flask, flow_id: int) -> tuple[int, dict[str, Any], Any, ConnectorContext]:
    """The live version id, its trigger, the connector and its context."""
    row = db.session.execute(
        select(FlowVersion).where(
            FlowVersion.flow_id == flow_id, FlowVersion.status == VersionStatus.LIVE.value
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotServable(f"flow {flow_id} has no live version")
    trigger = dict(row.definition.get("trigger") or {})
    trigger_type = str(trigger.get("type") or "")
    if not is_event_trigger(app, trigger_type):
        raise NotServable(f"flow {flow_id} is not triggered by an event ({trigger_type!r})")
    connection_config: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    connection_id = trigger.get("connection_id")
    if connection_id is not None:
        connection = db.session.get(Connection, connection_id)
        if connection is None:
            raise ConnectorError(f"connection {connection_id} of flow {flow_id} does not exist")
        connection_config = dict(connection.config or {})
        secrets = runtime.secret_box(app).decrypt(connection.secrets_encrypted)
    connector = runtime.registry(app).create(trigger_type)
    ctx = ConnectorContext(
        connection_config=connection_config,
        secrets=secrets,
        step_config=dict(trigger.get("config") or {}),
        logger=logging.getLogger(f"flowgate.connector.{trigger_type}"),
        http=runtime.http_session(app),
        egress=runtime.egress_policy(app),
    )
    return row.id, trigger, connector, ctx


def make_handler(app: Flask, flow_id: int, version_id: int) -> Callable[[Any, str | None], Any]:
    """record_run for one consumed message, in its own app context (a fresh DB session)."""
    from app.services.intake import check_backlog, record_run

    def handle(message: Any, event_id: str | None) -> Any:
        with app.app_context():
            try:
                flow = db.session.get(Flow, flow_id)
                version = db.session.get(FlowVersion, version_id)
                if flow is None or version is None:
                    raise RetryableConnectorError(f"flow {flow_id} version {version_id} is gone")
                check_backlog(flow_id)  # back-pressure: 429 here means nack and back off
                accepted = record_run(
                    flow, version, trigger_kind="event", message=message, event_id=event_id
                )
            except Invalid as exc:  # the same event id with another body: never acceptable
                db.session.rollback()
                raise ConnectorError(str(exc)) from exc
            except ServiceError as exc:
                db.session.rollback()
                raise RetryableConnectorError(str(exc)) from exc
            except Exception:
                db.session.rollback()
                raise
            finally:
                db.session.remove()
        log.info(
            "consumer.accepted flow_id=%s run_id=%s duplicate=%s",
            flow_id,
            accepted.run_id,
            accepted.duplicate,
        )
        return accepted

    return handle


def serve(app: Flask, flow_id: int, stop_event: threading.Event) -> None:
    """Consume the flow's subscription until ``stop_event`` is set (the child's body)."""
    with app.app_context():
        try:
            version_id, trigger, connector, ctx = _load(app, flow_id)
        finally:
            db.session.remove()
    log.info(
        "consumer.serving flow_id=%s version_id=%s trigger=%s",
        flow_id,
        version_id,
        trigger.get("type"),
    )
    connector.consume(ctx, make_handler(app, flow_id, version_id), stop_event)
    log.info("consumer.stopped flow_id=%s", flow_id)


def _watch_parent(stop_event: threading.Event) -> None:
    """Stop when the supervisor is gone (the child was re-parented)."""
    parent = os.getppid()

    def watch() -> None:
        while not stop_event.wait(2.0):
            if os.getppid() != parent:
                log.warning("consumer.orphaned: the supervisor is gone; stopping")
                stop_event.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def child_main(flow_id: int) -> int:
    app = create_app()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    _watch_parent(stop)
    try:
        serve(app, flow_id, stop)
    except NotServable as exc:
        log.warning("consumer.not_servable flow_id=%s reason=%s", flow_id, exc)
        return 0
    except ConnectorError as exc:
        log.error("consumer.failed flow_id=%s error=%s", flow_id, exc.message)
        return 2
    return 0


# --- supervisor ---


@dataclass
class Child:
    flow_id: int
    version_id: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float = 0.0


class Supervisor:
    """Keeps one child per subscription; ``command`` builds a child's argv (tests)."""

    def __init__(
        self,
        app: Flask,
        *,
        command: Callable[[int], list[str]] | None = None,
        grace_seconds: float | None = None,
    ) -> None:
        self.app = app
        self.command = command or (
            lambda flow_id: [sys.executable, "-m", "app.consumer", "--flow", str(flow_id)]
        )
        self.grace = (
            grace_seconds
            if grace_seconds is not None
            else _setting(app, "FLOWGATE_CONSUMER_GRACE_SECONDS", 20)
        )
        self.children: dict[int, Child] = {}

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(self.command(child.flow_id))
        child.started_at = time.monotonic()
        log.info(
            "consumer.child_started flow_id=%s version_id=%s pid=%s",
            child.flow_id,
            child.version_id,
            child.process.pid,
        )

    def _stop(self, children: list[Child]) -> None:
        running = [c for c in children if c.process is not None and c.process.poll() is None]
        for child in running:
            assert child.process is not None
            child.process.terminate()
        deadline = time.monotonic() + self.grace
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("consumer.child_killed flow_id=%s", child.flow_id)
                child.process.kill()
                child.process.wait()
            log.info("consumer.child_stopped flow_id=%s", child.flow_id)

    def reconcile(self, wanted: dict[int, int] | None = None) -> None:
        wanted = subscriptions(self.app) if wanted is None else wanted
        stale = [
            child
            for flow_id, child in self.children.items()
            if wanted.get(flow_id) != child.version_id
        ]
        self._stop(stale)
        for child in stale:
            del self.children[child.flow_id]
        now = time.monotonic()
        for flow_id, version_id in wanted.items():
            child = self.children.get(flow_id)
            if child is None:
                child = self.children[flow_id] = Child(flow_id, version_id)
                self._start(child)
                continue
            assert child.process is not None
            code = child.process.poll()
            if code is None:
                if now - child.started_at > _HEALTHY_AFTER_SECONDS:
                    child.failures = 0
                continue
            if child.restart_at == 0.0:  # just noticed the exit: schedule the restart
                if now - child.started_at > _HEALTHY_AFTER_SECONDS:
                    child.failures = 0
                delay = min(2.0**child.failures, _MAX_RESTART_BACKOFF)
                child.failures += 1
                child.restart_at = now + delay
                log.warning(
                    "consumer.child_exited flow_id=%s code=%s restart_in=%gs",
                    flow_id,
                    code,
                    delay,
                )
            if now >= child.restart_at:
                child.restart_at = 0.0
                self._start(child)

    def run(self, stop: threading.Event) -> None:
        interval = _setting(self.app, "FLOWGATE_CONSUMER_RECONCILE_SECONDS", 10)
        last = float("-inf")
        log.info("consumer.supervisor_started interval=%ss", interval)
        try:
            while not stop.is_set():
                now = time.monotonic()
                full = now - last >= interval
                try:
                    # Every second: restart dead children; every interval: re-read live flows.
                    if full:
                        last = now
                        self.reconcile()
                    else:
                        self.reconcile(
                            {flow_id: c.version_id for flow_id, c in self.children.items()}
                        )
                except Exception:  # database down: keep the running children, try again
                    log.exception("consumer.reconcile_failed")
                stop.wait(1.0)
        finally:
            self._stop(list(self.children.values()))
            self.children.clear()
            log.info("consumer.supervisor_stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.consumer")
    parser.add_argument("--flow", type=int, help="serve this flow's subscription (a child)")
    args = parser.parse_args(argv)
    configure_logging()  # FLOWGATE_LOG_FORMAT (json by default) and FLOWGATE_LOG_LEVEL
    if args.flow is not None:
        sys.exit(child_main(args.flow))
    app = create_app()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    Supervisor(app).run(stop)


if __name__ == "__main__":
    main()
