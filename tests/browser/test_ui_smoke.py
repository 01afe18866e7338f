"""Browser smoke test: the built web UI against the real Flask app, in system Chromium.

The app (SQLite only) is served by a real WSGI server on a free loopback port, seeded with
the demo data, and driven with Playwright's sync API: sign in, see the demo flow, send the
sample order, follow its run to the detail page, reload a deep link, sign out.

Needs the built UI (``frontend/dist``; ``make test`` builds it) and Chromium
(``apt-get install -y chromium``; set CHROMIUM to use another binary). Never run
``playwright install``: the browser is the system one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = [
    pytest.mark.slow,
    # The UI is backend-agnostic; one database is enough here (no PostgreSQL half).
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

ROOT = Path(__file__).resolve().parents[2]
DIST_INDEX = ROOT / "frontend" / "dist" / "index.html"
ORDER = json.loads((ROOT / "app" / "demo" / "commerce-order-created.json").read_text("utf-8"))

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 10_000

# Chromium logs every non-2xx fetch as a console error. These two 401s are the app's normal
# behaviour: the session probe before sign-in and the deliberate wrong-password attempt.
EXPECTED_401 = re.compile(r"/api/v1/auth/(me|login)$")


def watch_console(page: Any, *allowed: tuple[int, str]) -> list[str]:
    """Collect the page's console errors and uncaught exceptions.

    A failed request is logged by Chromium as "status of <code>"; the signed-out 401s of the
    session check are always expected, and ``allowed`` adds (status, URL regex) pairs a test
    provokes on purpose."""
    expected = [(401, EXPECTED_401), *((code, re.compile(url)) for code, url in allowed)]
    errors: list[str] = []

    def on_console(msg: Any) -> None:
        if msg.type != "error":
            return
        url = (msg.location or {}).get("url", "")
        if any(f"status of {code}" in msg.text and rx.search(url) for code, rx in expected):
            return
        errors.append(f"console.error: {msg.text} ({url})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    return errors


def test_sign_in_see_flow_follow_run_sign_out(
    live_app: tuple[Any, str], browser_page: Any, run_worker: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    from app.demo.seed import demo_logins

    app, base_url = live_app
    page = browser_page
    analyst_password = demo_logins(app)["analyst@flowgate.local"]

    console_errors = watch_console(page)

    # -- Login page: labelled fields; a wrong password is refused with a visible error.
    page.goto(base_url + "/")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    email = page.get_by_label("Email")
    password = page.get_by_label("Password")
    expect(email).to_be_visible()
    expect(password).to_be_visible()
    expect(password).to_have_attribute("type", "password")

    email.fill("analyst@flowgate.local")
    password.fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Invalid email or password")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(password).to_have_value("")  # cleared after a failed attempt

    # -- Sign in as the demo analyst: lands on Flows.
    password.fill(analyst_password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/flows$"))
    expect(page.get_by_role("heading", name="Flows", level=1)).to_be_visible()
    expect(page.get_by_text("analyst@flowgate.local")).to_be_visible()

    flows_table = page.get_by_role("table", name="Flows")
    row = flows_table.get_by_role("row").filter(has_text="Web orders → OMS")
    expect(row).to_have_count(1)
    expect(row.get_by_role("cell").nth(1)).to_have_text("web-orders-oms")  # slug
    expect(row.get_by_role("cell").nth(3)).to_have_text("v1")  # live version
    expect(row.get_by_role("cell").nth(5)).to_contain_text("/hooks/web-orders-oms")  # webhook

    # -- A web-shop order arrives; the worker runs it against the demo OMS.
    response = requests.post(f"{base_url}/hooks/web-orders-oms", json=ORDER, timeout=10)
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    run_worker()

    # -- Runs: search by business key, filter by status, find the run.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Runs").click()
    expect(page).to_have_url(re.compile(r"/runs$"))
    expect(page.get_by_role("heading", name="Runs", level=1)).to_be_visible()
    page.get_by_label("Order number, SKU or e-mail").fill("1001")
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"/runs\?q=1001$"))
    page.get_by_label("Status").select_option("succeeded")
    expect(page).to_have_url(re.compile(r"/runs\?.*status=succeeded"))
    runs_table = page.get_by_role("table", name="Recent runs")
    run_row = runs_table.get_by_role("row").filter(has=page.get_by_role("link", name=f"#{run_id}"))
    expect(run_row).to_have_count(1)
    expect(run_row).to_contain_text("Web orders → OMS")
    expect(run_row).to_contain_text("succeeded")
    expect(run_row).to_contain_text("1001")
    expect(runs_table.get_by_role("row")).to_have_count(2)  # header + this run

    # A status that does not match hides it.
    page.get_by_label("Status").select_option("dead_lettered")
    expect(page.get_by_text("No runs match these filters.")).to_be_visible()
    page.get_by_label("Status").select_option("succeeded")
    expect(run_row).to_have_count(1)

    # -- Run detail: summary, the three steps with their outputs, the acknowledged delivery.
    run_row.get_by_role("link", name=f"#{run_id}").click()
    expect(page).to_have_url(re.compile(rf"/runs/{run_id}$"))

    def assert_run_detail() -> None:
        expect(page.get_by_role("heading", name=f"Run #{run_id}", level=1)).to_be_visible()
        summary = page.locator("dl.summary")
        expect(summary).to_contain_text("Web orders → OMS")
        expect(summary).to_contain_text("succeeded")
        expect(summary).to_contain_text("1001")
        steps = page.locator("ol.steps > li")
        expect(steps).to_have_count(3)
        expect(steps.locator("h3")).to_have_text(["only_paid", "to_oms_order", "send_oms"])
        for i in range(3):
            expect(steps.nth(i).locator(".badge")).to_have_text("succeeded")
        mapped = steps.nth(1).locator("figure", has_text="Output")
        expect(mapped).to_contain_text('"orderRef": "WEB-1001"')
        expect(mapped).to_contain_text("O'Brien-Ñúñez")  # non-ASCII survives end to end
        deliveries = page.get_by_role("table", name="Deliveries")
        delivery = deliveries.get_by_role("row").filter(has_text="send_oms")
        expect(delivery).to_have_count(1)
        expect(delivery).to_contain_text("acknowledged")
        expect(delivery).to_contain_text(f"-run-{run_id}-send_oms")  # idempotency key
        expect(delivery.get_by_role("cell").nth(4)).to_have_text("201")

    assert_run_detail()
    page.screenshot(path=str(tmp_path / "run-detail.png"), full_page=True)

    # -- A deep link survives a reload.
    page.reload()
    expect(page).to_have_url(re.compile(rf"/runs/{run_id}$"))
    assert_run_detail()

    # -- Sign out: back on the login page, and protected pages need signing in again.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_label("Email")).to_be_visible()
    page.goto(f"{base_url}/runs/{run_id}")
    expect(page).to_have_url(re.compile(rf"/login\?next=%2Fruns%2F{run_id}$"))
    expect(page.get_by_label("Password")).to_be_visible()

    assert console_errors == []
