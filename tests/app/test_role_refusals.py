"""Every mutating endpoint of the API, called by a role that may not use it, answers 403.

The endpoints come from the app's url_map, so a new endpoint fails this test until it is
classified below. Each call carries a body that passes the endpoint's schema (built from its
marshmallow arguments) and ids of rows that do not exist: the role must be refused before any
lookup or validation can answer instead.
"""

from __future__ import annotations

from typing import Any

import pytest
from marshmallow import Schema, fields, validate

from app import create_app
from tests.conftest import SECRET

ROLES = ("analyst", "owner", "admin")
ANALYST_UP = {"analyst", "owner", "admin"}
OWNER = {"owner"}
OWNER_ADMIN = {"owner", "admin"}
ADMIN = {"admin"}

# Endpoint -> roles allowed. ANALYST_UP entries are the explicit allowlist of endpoints any
# signed-in user may call (object-level rules, e.g. withdraw by the author, are tested
# elsewhere).
ALLOWED: dict[str, set[str]] = {
    "auth.login": ANALYST_UP,
    "auth.logout": ANALYST_UP,
    "flows.create_flow": ANALYST_UP,
    "flows.save_draft": ANALYST_UP,
    "flows.validate_definition": ANALYST_UP,
    "flows.submit_flow_version": ANALYST_UP,
    "flows.withdraw_flow_version": ANALYST_UP,
    "flows.approve_flow_version": OWNER,
    "flows.reject_flow_version": OWNER,
    "flows.rollback_flow_version": OWNER,
    "flows.run_flow_manually": OWNER_ADMIN,
    "governance.add_version_comment": ANALYST_UP,
    "governance.save_version_contract": ANALYST_UP,
    "governance.save_version_layout": ANALYST_UP,
    "governance.import_flow": ANALYST_UP,
    "governance.read_notification": ANALYST_UP,
    "governance.read_all_notifications": ANALYST_UP,
    "governance.update_user": ADMIN,
    "admin.create_user": ADMIN,
    "admin.retry_outbox_message": ADMIN,
    "editor.test_run": ANALYST_UP,
    "mappings.preview_mapping": ANALYST_UP,
    # A new connection affects nothing until a reviewed version uses it; changing one
    # changes live flows without review, so only owners (and admins) may.
    "connections.create_connection": ANALYST_UP,
    "connections.update_connection": OWNER_ADMIN,
    "connections.test_connection": ANALYST_UP,
    "systems.create_system": OWNER_ADMIN,
    "systems.update_system": OWNER_ADMIN,
    "systems.delete_system": OWNER_ADMIN,
    "dead_letters.replay_dead_letters": OWNER,
    "alerts.acknowledge_alert": OWNER_ADMIN,
    "alerts.resolve_alert": OWNER_ADMIN,
    "alerts.put_alert_rules": OWNER_ADMIN,
    "reconciliation.reconcile_flow": OWNER_ADMIN,
    "reconciliation.replay_report": OWNER,
    "reconciliation.put_checks": OWNER_ADMIN,
}


def _mutating_endpoints() -> list[tuple[str, str, str]]:
    app = create_app(
        {"TESTING": True, "SECRET_KEY": SECRET, "SQLALCHEMY_DATABASE_URI": "sqlite://"}
    )
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        for method in sorted(rule.methods - {"GET", "HEAD", "OPTIONS"}):
            found.append((rule.endpoint, method, rule.rule))
    return sorted(found)


ENDPOINTS = _mutating_endpoints()


def test_every_mutating_endpoint_is_classified() -> None:
    unknown = sorted({e for e, _, _ in ENDPOINTS} - set(ALLOWED))
    assert unknown == [], f"classify the roles allowed on {unknown} in ALLOWED"


def _value(field: fields.Field) -> Any:
    for validator in getattr(field, "validators", []):
        if isinstance(validator, validate.OneOf):
            return list(validator.choices)[0]
    if isinstance(field, fields.Nested):
        schema = field.schema
        return _payload(schema if isinstance(schema, Schema) else schema())
    if isinstance(field, fields.List):
        return []
    if isinstance(field, fields.Dict):
        return {}
    if isinstance(field, fields.Bool):
        return False
    if isinstance(field, fields.Float | fields.Int):
        return 1
    if isinstance(field, fields.Email):
        return "someone@example.test"
    return "x"


def _payload(schema: Schema) -> dict[str, Any]:
    return {
        field.data_key or name: _value(field)
        for name, field in schema.fields.items()
        if field.required and not field.dump_only
    }


def _request(app: Any, endpoint: str, rule: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    path = rule
    for arg in (
        "flow_id",
        "number",
        "connection_id",
        "system_id",
        "alert_id",
        "report_id",
        "notification_id",
        "user_id",
        "outbox_id",
    ):
        path = path.replace(f"<int:{arg}>", "987654")
    body: dict[str, Any] = {}
    query: dict[str, Any] = {}
    apidoc = getattr(app.view_functions[endpoint], "_apidoc", {})
    for param in (apidoc.get("arguments") or {}).get("parameters", []):
        schema = param["schema"]
        schema = schema if isinstance(schema, Schema) else schema()
        if param["in"] == "json":
            body.update(_payload(schema))
        elif param["in"] == "query":
            query.update(_payload(schema))
    return path, body, query


REFUSALS = [
    pytest.param(endpoint, method, rule, role, id=f"{endpoint}-as-{role}")
    for endpoint, method, rule in ENDPOINTS
    for role in ROLES
    if endpoint in ALLOWED and role not in ALLOWED[endpoint]
]


@pytest.mark.parametrize(("endpoint", "method", "rule", "role"), REFUSALS)
def test_wrong_role_is_refused_with_403(
    app: Any, client: Any, make_user: Any, endpoint: str, method: str, rule: str, role: str
) -> None:
    _, headers = make_user(role)
    path, body, query = _request(app, endpoint, rule)
    r = client.open(path, method=method, json=body, query_string=query, headers=headers)
    assert r.status_code == 403, (endpoint, role, r.status_code, r.get_json())
    assert r.mimetype == "application/problem+json"
