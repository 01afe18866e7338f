"""Browser test of the admin pages: an admin promotes an analyst and creates a user through
the UI; an analyst sees no Admin entry and is told /admin is not for them."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from tests.browser.test_ui_smoke import watch_console

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

CANARY = "CANARY-smtp-pw-51d2"
NEW_EMAIL = "nora.new@example.test"
NEW_PASSWORD = "a-long-initial-password"


def _sign_in(page: Any, base_url: str, email: str, password: str) -> None:
    from playwright.sync_api import expect

    page.goto(base_url + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/flows$"))


def test_admin_manages_users_and_analyst_is_kept_out(
    live_app: tuple[Any, str], browser_page: Any
) -> None:
    from playwright.sync_api import expect

    from app.demo.seed import demo_logins
    from app.extensions import db
    from app.models import AuditEvent, User

    app, base_url = live_app
    app.config["FLOWGATE_SMTP_URL"] = f"smtp://mailer:{CANARY}@smtp.example.test:2525"
    logins = demo_logins(app)
    page = browser_page
    errors = watch_console(page, (422, r"/api/v1/users$"))  # the deliberately weak password

    # -- The admin opens Admin from the main navigation.
    _sign_in(page, base_url, "admin@flowgate.local", logins["admin@flowgate.local"])
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin").click()
    expect(page).to_have_url(re.compile(r"/admin$"))
    expect(page.get_by_role("heading", name="Users", level=1)).to_be_visible()
    table = page.get_by_role("table", name="Users")
    expect(table.get_by_role("row")).to_have_count(4)  # header + the three demo users

    # Their own role cannot be changed, and the page says why.
    own = page.get_by_label("Role of admin@flowgate.local")
    expect(own).to_be_disabled()
    expect(own).to_have_accessible_description(re.compile("cannot change your own role"))
    expect(page.get_by_role("button", name="Deactivate admin@flowgate.local")).to_be_disabled()

    # -- Promote the analyst to owner.
    analyst_role = page.get_by_label("Role of analyst@flowgate.local")
    expect(analyst_role).to_have_value("analyst")
    analyst_role.select_option("owner")
    expect(
        page.get_by_role("status").filter(has_text="analyst@flowgate.local is now owner")
    ).to_be_visible()
    page.reload()
    expect(page.get_by_label("Role of analyst@flowgate.local")).to_have_value("owner")
    with app.app_context():
        promoted = db.session.execute(
            select(User).where(User.email == "analyst@flowgate.local")
        ).scalar_one()
        assert promoted.role == "owner"
        event = (
            db.session.execute(
                select(AuditEvent)
                .where(AuditEvent.action == "user.role_changed")
                .order_by(AuditEvent.id.desc())
            )
            .scalars()
            .first()
        )
        assert event is not None and event.actor_label == "admin@flowgate.local"
        assert event.detail["previous"] == "analyst" and event.detail["role"] == "owner"
        db.session.remove()

    # -- Create an analyst: a weak password is refused inline, then a good one works.
    form = page.get_by_role("form", name="Create a user")
    form.get_by_label("Email").fill(NEW_EMAIL)
    form.get_by_label("Name").fill("Nora New")
    form.get_by_label("Role").select_option("analyst")
    form.get_by_label("Initial password").fill("short-pw")
    form.get_by_role("button", name="Create user").click()
    expect(form.get_by_role("alert")).to_contain_text("at least 12 characters")
    expect(form.get_by_label("Initial password")).to_have_attribute("aria-invalid", "true")
    form.get_by_label("Initial password").fill(NEW_PASSWORD)
    form.get_by_role("button", name="Create user").click()
    expect(page.get_by_label(f"Role of {NEW_EMAIL}")).to_have_value("analyst")
    expect(form.get_by_role("alert")).to_have_count(0)
    expect(form.get_by_label("Email")).to_have_value("")

    # -- Deactivate and reactivate them.
    page.get_by_role("button", name=f"Deactivate {NEW_EMAIL}").click()
    expect(page.get_by_role("button", name=f"Reactivate {NEW_EMAIL}")).to_be_visible()
    page.get_by_role("button", name=f"Reactivate {NEW_EMAIL}").click()
    expect(page.get_by_role("button", name=f"Deactivate {NEW_EMAIL}")).to_be_visible()

    # -- Settings: read-only, effective values, no SMTP password.
    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Settings").click()
    expect(page).to_have_url(re.compile(r"/admin/settings$"))
    settings = page.get_by_role("table", name="Settings")
    backlog = settings.get_by_role("row").filter(has_text="FLOWGATE_MAX_BACKLOG")
    expect(backlog).to_contain_text(str(app.config["FLOWGATE_MAX_BACKLOG"]))
    smtp = settings.get_by_role("row").filter(has_text="FLOWGATE_SMTP_URL")
    expect(smtp).to_contain_text("smtp://smtp.example.test:2525")
    assert CANARY not in page.content()
    secret_key = settings.get_by_role("row").filter(
        has=page.get_by_role("rowheader", name="FLOWGATE_SECRET_KEY", exact=True)
    )
    expect(secret_key).to_contain_text("configured (hidden)")

    # -- The new analyst: no Admin entry, and /admin says they are not allowed.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login"))
    _sign_in(page, base_url, NEW_EMAIL, NEW_PASSWORD)
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Flows")).to_be_visible()
    expect(nav.get_by_role("link", name="Admin")).to_have_count(0)
    for path in ("/admin", "/admin/settings"):
        page.goto(base_url + path)
        expect(page.get_by_role("alert")).to_contain_text("not allowed")
        expect(page.get_by_role("table")).to_have_count(0)
        expect(page.get_by_role("form", name="Create a user")).to_have_count(0)

    assert errors == []
