"""Browser: an owner adds a SQL check on the reconciliation page (connection picker filtered to
SQL connections, SQL textarea, ids expression), reconciles, sees the id the destination's own
database lacks, and re-sends it in one click."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from tests.browser.test_ui_smoke import ORDER, watch_console

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


def test_owner_adds_a_sql_check_and_resends_the_missing_id(
    live_app: tuple[Any, str], browser_page: Any, run_worker: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    from app.demo.seed import demo_logins
    from app.extensions import db
    from app.models import Flow, Role, User
    from app.services.connections import create_connection

    app, base_url = live_app
    page = browser_page
    # The refused DELETE is a 422 the test provokes on purpose.
    console_errors = watch_console(page, (422, r"/reconciliation/checks$"))

    books = tmp_path / "oms_books.db"
    with sqlite3.connect(books) as conn:
        conn.execute("CREATE TABLE booked (ref TEXT NOT NULL, day TEXT NOT NULL)")
    app.config["FLOWGATE_FILE_ROOTS"] = [str(tmp_path)]
    owner = db.session.execute(select(User).where(User.role == Role.OWNER.value)).scalars().first()
    config = {"dialect": "sqlite", "sqlite_path": str(books)}
    create_connection({"name": "OMS books", "connector": "sql", "config": config}, owner)
    flow = db.session.execute(select(Flow).where(Flow.slug == "web-orders-oms")).scalar_one()
    r = requests.post(
        f"{base_url}/hooks/web-orders-oms", json={**ORDER, "order_number": 7101}, timeout=10
    )
    assert r.status_code == 202, r.text
    run_worker()

    page.goto(f"{base_url}/reconciliation?flow={flow.id}")
    page.get_by_label("Email").fill("owner@flowgate.local")
    page.get_by_label("Password").fill(demo_logins(app)["owner@flowgate.local"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("No external check yet.")).to_be_visible()

    page.get_by_role("button", name="Add SQL check").click()
    check = page.get_by_role("group", name="Check 1")
    picker = check.get_by_label("Connection")
    expect(picker.locator("option")).to_have_text(
        ["Choose a SQL connection", "OMS books (sql)"]  # HTTP connections are not offered
    )
    picker.select_option(label="OMS books (sql)")
    check.get_by_label("SQL query").fill("SELECT ref FROM booked WHERE day = :day")
    check.get_by_label("Ids expression (JSONata)").fill("ref")
    check.get_by_label("Name").fill("OMS books")  # the group is named after it from now on
    page.get_by_role("button", name="Save checks").click()
    expect(page.get_by_role("status").filter(has_text="Checks saved.")).to_be_visible()

    check = page.get_by_role("group", name="OMS books")
    check.get_by_label("SQL query").fill("DELETE FROM booked")
    page.get_by_role("button", name="Save checks").click()
    expect(page.get_by_role("alert")).to_contain_text("only a SELECT statement is allowed")
    check.get_by_label("SQL query").fill("SELECT ref FROM booked WHERE day = :day")
    page.get_by_role("button", name="Save checks").click()
    expect(page.get_by_role("status").filter(has_text="Checks saved.")).to_be_visible()

    page.get_by_role("button", name="Reconcile now").click()
    report = page.get_by_role("article").first
    expect(report).to_contain_text("missing there: 7101")
    expect(report).to_contain_text("OMS books (destination, SQL)")
    report.get_by_role("button", name=re.compile(r"Re-send 1 missing id")).click()
    expect(report.get_by_role("status")).to_contain_text("1 missing id(s) re-sent")
    page.screenshot(path=str(Path("screenshots") / "reconciliation-sql-check.png"), full_page=True)
    assert console_errors == []
