from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import select

from app import runtime
from app.crypto import MASK, merge_secrets
from app.errors import Conflict, Invalid, NotFound
from app.extensions import db
from app.models import Connection, System, User
from app.services import audit
from connectors.base import CheckResult, ConnectorContext, ConnectorError
from connectors.config import apply_defaults, config_problems


def _spec(connector_key: str) -> Any:
    try:
        return runtime.registry().spec(connector_key)
    except ConnectorError as exc:
        raise Invalid(str(exc), problems=[{"path": "/connector", "message": str(exc)}]) from exc


def _checked_config(spec: Any, config: dict[str, Any]) -> dict[str, Any]:
    problems = config_problems(spec.connection_schema, config)
    if problems:
        raise Invalid(
            "the connection config does not match the connector's schema",
            problems=[{"path": f"/config{p}", "message": m} for p, m in problems],
        )
    _refuse_blocked_host(config)
    _refuse_paths_outside_roots(config)
    return apply_defaults(spec.connection_schema, config)


def _local_paths(config: dict[str, Any]) -> list[tuple[str, str]]:
    """Local filesystem targets: a SQLite database file, a local file destination's folder."""
    paths = []
    if config.get("dialect") == "sqlite" and isinstance(config.get("sqlite_path"), str):
        paths.append(("sqlite_path", config["sqlite_path"]))
    if config.get("transport") == "local" and isinstance(config.get("base_dir"), str):
        paths.append(("base_dir", config["base_dir"]))
    return paths


def _refuse_paths_outside_roots(config: dict[str, Any]) -> None:
    """Local paths must lie under an operator-approved root (FLOWGATE_FILE_ROOTS), so a
    connection cannot write into Flowgate's own database or any file the worker can reach."""
    roots = [Path(r).resolve() for r in current_app.config["FLOWGATE_FILE_ROOTS"]]
    own_db = current_app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    for field, raw in _local_paths(config):
        path = Path(raw).resolve()
        inside = any(path == root or root in path.parents for root in roots)
        if not inside or str(path) == str(Path(own_db).resolve()):
            allowed = ", ".join(str(r) for r in roots) or "none configured"
            raise Invalid(
                f"{raw} is outside the folders connections may use ({allowed}); an "
                "administrator can add one with FLOWGATE_FILE_ROOTS",
                problems=[{"path": f"/config/{field}", "message": "outside FLOWGATE_FILE_ROOTS"}],
            )


def _target_host(config: dict[str, Any]) -> tuple[str, str] | None:
    """The (field, host) a connection points at: an http base_url's host or a `host` field."""
    if isinstance(config.get("base_url"), str):
        return "base_url", urlsplit(config["base_url"]).hostname or ""
    if isinstance(config.get("host"), str):
        return "host", config["host"]
    return None


def _refuse_blocked_host(config: dict[str, Any]) -> None:
    """Refuse at save what the egress guard would refuse at send, when it is knowable without
    DNS: IP literals (any spelling Python parses) and localhost. Names are checked at send."""
    target = _target_host(config)
    if target is None:
        return
    field, host = target
    host = host.strip("[]").lower()
    candidates = ["127.0.0.1", "::1"] if host in ("localhost", "localhost.") else [host]
    for candidate in candidates:
        try:
            reason = runtime.egress_policy().refusal_reason(candidate)
        except ValueError:
            return  # a host name: resolved and checked on every connection instead
        if reason:
            raise Invalid(
                f"outbound connections to {host} are refused ({reason}); an administrator can "
                "allow the network with FLOWGATE_EGRESS_ALLOW",
                problems=[{"path": f"/config/{field}", "message": f"egress_blocked: {reason}"}],
            )


def _checked_secrets(spec: Any, secrets: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(secrets) - set(spec.secret_fields))
    if unknown:
        raise Invalid(
            f"unknown secret fields: {', '.join(unknown)}",
            problems=[{"path": f"/secrets/{f}", "message": "not a secret field"} for f in unknown],
        )
    bad = [f for f, v in secrets.items() if v is not None and not isinstance(v, str)]
    if bad:
        raise Invalid("secret values must be strings")
    return secrets


def _check_system(system_id: int | None) -> None:
    if system_id is not None and db.session.get(System, system_id) is None:
        raise Invalid(f"system {system_id} does not exist")


def get_connection(connection_id: int) -> Connection:
    row = db.session.get(Connection, connection_id)
    if row is None:
        raise NotFound(f"connection {connection_id} does not exist")
    return row


def list_connections() -> list[Connection]:
    return list(db.session.execute(select(Connection).order_by(Connection.name)).scalars())


def create_connection(data: dict[str, Any], actor: User) -> Connection:
    spec = _spec(data["connector"])
    config = _checked_config(spec, data.get("config") or {})
    secrets = _checked_secrets(spec, data.get("secrets") or {})
    _check_system(data.get("system_id"))
    if db.session.execute(select(Connection.id).where(Connection.name == data["name"])).first():
        raise Conflict(f"a connection named '{data['name']}' exists")
    row = Connection(
        name=data["name"],
        connector_key=spec.key,
        config=config,
        secrets_encrypted=runtime.secret_box().encrypt(
            {k: v for k, v in secrets.items() if v not in (None, "", MASK)}
        ),
        system_id=data.get("system_id"),
        rate_limit_per_second=data.get("rate_limit_per_second"),
        max_in_flight=data.get("max_in_flight"),
    )
    db.session.add(row)
    db.session.flush()
    audit.record(
        actor,
        "connection.created",
        "connection",
        row.id,
        connector=spec.key,
        secret_fields=sorted(secrets),
    )
    db.session.commit()
    return row


def update_connection(connection_id: int, data: dict[str, Any], actor: User) -> Connection:
    row = get_connection(connection_id)
    spec = _spec(row.connector_key)
    changed: list[str] = []
    if "name" in data and data["name"] != row.name:
        row.name, changed = data["name"], [*changed, "name"]
    if "config" in data:
        row.config, changed = _checked_config(spec, data["config"] or {}), [*changed, "config"]
    if "system_id" in data:
        _check_system(data["system_id"])
        row.system_id, changed = data["system_id"], [*changed, "system_id"]
    for limit in ("rate_limit_per_second", "max_in_flight"):
        if limit in data:
            setattr(row, limit, data[limit])
            changed.append(limit)
    if "secrets" in data:
        incoming = _checked_secrets(spec, data["secrets"] or {})
        box = runtime.secret_box()
        row.secrets_encrypted = box.encrypt(
            merge_secrets(box.decrypt(row.secrets_encrypted), incoming)
        )
        # Which secrets changed is audited, never their values.
        changed.append("secrets:" + ",".join(sorted(k for k, v in incoming.items() if v != MASK)))
    audit.record(actor, "connection.updated", "connection", row.id, changed=changed)
    db.session.commit()
    return row


def stored_secret_fields(row: Connection) -> set[str]:
    return set(runtime.secret_box().decrypt(row.secrets_encrypted))


def test_connection(connection_id: int, actor: User) -> CheckResult:
    """Run the connector's ``check()`` against the stored connection (editor button)."""
    row = get_connection(connection_id)
    connector = runtime.registry().create(row.connector_key)
    ctx = ConnectorContext(
        connection_config=row.config or {},
        secrets=runtime.secret_box().decrypt(row.secrets_encrypted),
        step_config={},
        logger=logging.getLogger(f"flowgate.connector.{row.connector_key}"),
        http=runtime.http_session(),
        egress=runtime.egress_policy(),
    )
    started = time.perf_counter()
    try:
        result = connector.check(ctx)
    except ConnectorError as exc:
        result = CheckResult(ok=False, message=exc.message)
    audit.record(
        actor,
        "connection.tested",
        "connection",
        row.id,
        ok=result.ok,
        ms=round((time.perf_counter() - started) * 1000),
    )
    db.session.commit()
    return result
