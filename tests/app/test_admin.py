"""Admins create users and read the effective settings; nobody else may, and no secret leaks."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent, User
from tests.conftest import SECRET

STRONG = "twelve-chars-or-more"


def _events(action: str) -> list[AuditEvent]:
    """Events of ``action`` made by a person (make_user's own creations are by "system")."""
    return list(
        db.session.execute(
            select(AuditEvent)
            .where(AuditEvent.action == action, AuditEvent.actor_id.is_not(None))
            .order_by(AuditEvent.id)
        ).scalars()
    )


def _new_user(**overrides: Any) -> dict[str, Any]:
    body = {"email": "New.Person@Example.test", "name": "New Person", "role": "analyst"}
    body["password"] = STRONG
    body.update(overrides)
    return body


def test_admin_creates_a_user_who_can_sign_in(client: Any, make_user: Any) -> None:
    admin, headers = make_user("admin")
    r = client.post("/api/v1/users", json=_new_user(role="owner"), headers=headers)
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["email"] == "new.person@example.test"  # normalised like every other path
    assert body["name"] == "New Person"
    assert body["role"] == "owner"
    assert body["active"] is True
    assert STRONG not in r.get_data(as_text=True)
    assert "password" not in json.dumps(body)

    (event,) = _events("user.created")
    assert event.actor_id == admin.id
    assert event.object_id == str(body["id"])
    assert event.detail["email"] == "new.person@example.test"
    assert event.detail["role"] == "owner"
    assert STRONG not in json.dumps(event.detail)

    # The listing shows them, and the initial password works.
    listed = client.get("/api/v1/users", headers=headers).get_json()["items"]
    assert {"new.person@example.test": "owner"}.items() <= {
        u["email"]: u["role"] for u in listed
    }.items()
    fresh = client.application.test_client()
    login = fresh.post(
        "/api/v1/auth/login", json={"email": "new.person@example.test", "password": STRONG}
    )
    assert login.status_code == 200, login.get_json()
    assert login.get_json()["user"]["role"] == "owner"


def test_duplicate_email_is_a_conflict(client: Any, make_user: Any) -> None:
    _, headers = make_user("admin")
    assert client.post("/api/v1/users", json=_new_user(), headers=headers).status_code == 201
    # Same address, other case and padding: still the same person.
    r = client.post(
        "/api/v1/users",
        json=_new_user(email="NEW.person@example.TEST", role="admin"),
        headers=headers,
    )
    assert r.status_code == 409, r.get_json()
    assert r.mimetype == "application/problem+json"
    assert "new.person@example.test" in r.get_json()["detail"]
    assert len(_events("user.created")) == 1
    user = db.session.execute(
        select(User).where(User.email == "new.person@example.test")
    ).scalar_one()
    assert user.role == "analyst"  # the refused call changed nothing


@pytest.mark.parametrize(
    ("password", "status"),
    [("elevenchars", 422), (" " * 12, 422), ("x" * 1025, 422), ("twelve-chars", 201)],
)
def test_password_policy(client: Any, make_user: Any, password: str, status: int) -> None:
    _, headers = make_user("admin")
    r = client.post("/api/v1/users", json=_new_user(password=password), headers=headers)
    assert r.status_code == status, r.get_json()
    if status == 422:
        assert r.mimetype == "application/problem+json"
        assert "password" in r.get_json()["errors"]["json"]
        assert password not in r.get_data(as_text=True) or password.strip() == ""
        assert _events("user.created") == []


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"role": "root"}, "role"),
        ({"is_admin": True}, "is_admin"),
    ],
)
def test_bad_input_is_422(client: Any, make_user: Any, override: dict, field: str) -> None:
    _, headers = make_user("admin")
    r = client.post("/api/v1/users", json=_new_user(**override), headers=headers)
    assert r.status_code == 422, r.get_json()
    assert field in r.get_json()["errors"]["json"]


def test_role_change_is_audited_and_an_admin_cannot_demote_themself(
    client: Any, make_user: Any
) -> None:
    admin, headers = make_user("admin")
    created = client.post("/api/v1/users", json=_new_user(), headers=headers).get_json()
    r = client.patch(f"/api/v1/users/{created['id']}", json={"role": "owner"}, headers=headers)
    assert r.status_code == 200 and r.get_json()["role"] == "owner"
    (event,) = _events("user.role_changed")
    assert event.actor_id == admin.id
    assert (event.detail["previous"], event.detail["role"]) == ("analyst", "owner")

    r = client.patch(f"/api/v1/users/{admin.id}", json={"role": "analyst"}, headers=headers)
    assert r.status_code == 403
    assert db.session.get(User, admin.id).role == "admin"


@pytest.mark.parametrize("role", ["analyst", "owner"])
def test_non_admins_are_refused(client: Any, make_user: Any, role: str) -> None:
    _, headers = make_user(role)
    r = client.post("/api/v1/users", json=_new_user(role="admin"), headers=headers)
    assert r.status_code == 403, r.get_json()
    assert r.mimetype == "application/problem+json"
    assert (
        db.session.execute(
            select(User).where(User.email == "new.person@example.test")
        ).scalar_one_or_none()
        is None
    )
    assert _events("user.created") == []

    r = client.get("/api/v1/settings", headers=headers)
    assert r.status_code == 403, r.get_json()
    assert r.mimetype == "application/problem+json"
    assert "items" not in r.get_json()


@pytest.mark.parametrize("role", ["analyst", "owner"])
def test_non_admins_are_refused_before_their_input_is_checked(
    client: Any, make_user: Any, role: str
) -> None:
    _, headers = make_user(role)
    r = client.post("/api/v1/users", json={"email": "nope", "surprise": 1}, headers=headers)
    assert r.status_code == 403, r.get_json()
    assert "errors" not in r.get_json()


def test_anonymous_is_401(client: Any) -> None:
    assert client.get("/api/v1/settings").status_code == 401
    assert client.post("/api/v1/users", json=_new_user()).status_code == 401


CANARY = "CANARY-pw-7f3a9"


def test_settings_show_effective_values_and_never_secrets(
    app: Any, client: Any, make_user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, headers = make_user("admin")
    app.config.update(
        {
            "FLOWGATE_SMTP_URL": f"smtp://mailer:{CANARY}@smtp.example.test:2525?starttls=true",
            "FLOWGATE_NOTIFY_WEBHOOK_URL": f"https://hooks.example.test/services/{CANARY}-path",
            "FLOWGATE_ALERT_WEBHOOK_URL": f"https://chat.example.test/hook?token={CANARY}-query",
            "FLOWGATE_PUBLIC_URL": f"https://ops:{CANARY}-public@flowgate.example.test/",
            "FLOWGATE_SECRET_KEYS": [f"{CANARY}-fernet-key"],
            "FLOWGATE_METRICS_TOKEN": f"{CANARY}-metrics",
            "FLOWGATE_MAX_BACKLOG": 4321,
            "FLOWGATE_MAPPING_TIMEOUT_MS": 750,
            "FLOWGATE_RETENTION_DAYS": 9,
            "FLOWGATE_EGRESS_ALLOW": ["127.0.0.0/8", "10.1.0.0/16"],
        }
    )
    caplog.set_level(logging.DEBUG)
    r = client.get("/api/v1/settings", headers=headers)
    assert r.status_code == 200, r.get_json()
    text = r.get_data(as_text=True)
    for secret in (CANARY, SECRET, "mailer", "starttls", "services", "ops:"):
        assert secret not in text, secret
    assert CANARY not in caplog.text

    settings = {item["key"]: item for item in r.get_json()["items"]}
    assert settings["FLOWGATE_SMTP_URL"]["value"] == "smtp://smtp.example.test:2525"
    assert settings["FLOWGATE_NOTIFY_WEBHOOK_URL"]["value"] == "https://hooks.example.test"
    assert settings["FLOWGATE_ALERT_WEBHOOK_URL"]["value"] == "https://chat.example.test"
    assert settings["FLOWGATE_PUBLIC_URL"]["value"] == "https://flowgate.example.test/"
    assert settings["FLOWGATE_MAX_BACKLOG"]["value"] == 4321
    assert settings["FLOWGATE_MAPPING_TIMEOUT_MS"]["value"] == 750
    assert settings["FLOWGATE_RETENTION_DAYS"]["value"] == 9
    assert settings["FLOWGATE_EGRESS_ALLOW"]["value"] == ["127.0.0.0/8", "10.1.0.0/16"]
    for key in ("FLOWGATE_SECRET_KEY", "FLOWGATE_SECRET_KEYS", "FLOWGATE_METRICS_TOKEN"):
        assert settings[key] | {"description": ""} == {
            "key": key,
            "value": "configured",
            "secret": True,
            "description": "",
        }
    # The database is shown by address only: the test's PostgreSQL URL carries a user name.
    database = settings["FLOWGATE_DATABASE_URL"]["value"]
    assert "@" not in database
    assert database.split("://")[0] == app.config["SQLALCHEMY_DATABASE_URI"].split("://")[0]


def test_settings_with_unset_and_malformed_urls(app: Any, client: Any, make_user: Any) -> None:
    _, headers = make_user("admin")
    app.config.update(
        {
            "FLOWGATE_SMTP_URL": None,
            "FLOWGATE_METRICS_TOKEN": None,
            "FLOWGATE_NOTIFY_WEBHOOK_URL": f"https://user:{CANARY}@host:notaport/x",
        }
    )
    r = client.get("/api/v1/settings", headers=headers)
    assert r.status_code == 200
    assert CANARY not in r.get_data(as_text=True)
    settings = {item["key"]: item["value"] for item in r.get_json()["items"]}
    assert settings["FLOWGATE_SMTP_URL"] is None
    assert settings["FLOWGATE_METRICS_TOKEN"] is None
    assert settings["FLOWGATE_NOTIFY_WEBHOOK_URL"] == "(not a valid URL)"


def test_endpoints_are_documented(client: Any) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    create = spec["paths"]["/api/v1/users"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/UserCreate"
    )
    assert {"201", "403", "409", "422"} <= set(create["responses"])
    assert {"200", "403"} <= set(spec["paths"]["/api/v1/settings"]["get"]["responses"])
    # The password is write-only: no response schema can carry it.
    assert "password" not in json.dumps(spec["components"]["schemas"]["User"])
