"""Browser: the demo OMS goes down, an alert opens, and the owner reaches the failing step's
input/output from the alert in two clicks (alerts list → alert → run); acknowledge works."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests

from tests.browser.test_ui_smoke import ORDER, watch_console

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


def test_alert_to_failing_step_in_two_clicks(
    live_app: tuple[Any, str], browser_page: Any, run_worker: Any
) -> None:
    from playwright.sync_api import expect

    from app.demo import set_oms_outage
    from app.demo.seed import demo_logins
    from app.services import alerts

    app, base_url = live_app
    page = browser_page
    console_errors = watch_console(page)

    set_oms_outage(True)  # "stop the demo OMS": it answers 503
    for number in (7001, 7002, 7003):
        r = requests.post(
            f"{base_url}/hooks/web-orders-oms", json={**ORDER, "order_number": number}, timeout=10
        )
        assert r.status_code == 202, r.text
    run_worker()
    assert alerts.evaluate(app)["opened"] >= 1

    page.goto(base_url + "/alerts")
    page.get_by_label("Email").fill("owner@flowgate.local")
    page.get_by_label("Password").fill(demo_logins(app)["owner@flowgate.local"])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/alerts$"))
    table = page.get_by_role("table", name="Alerts")
    row = table.get_by_role("row").filter(has_text="consecutive failures")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Web orders → OMS")
    expect(row).to_contain_text("OMS")

    row.get_by_role("link").first.click()  # click 1: the alert
    expect(page.get_by_role("heading", name=re.compile(r"Alert #\d+"), level=1)).to_be_visible()
    expect(page.get_by_text("503").first).to_be_visible()
    page.get_by_role("link", name=re.compile("Open failing run")).click()  # click 2: the run
    expect(page).to_have_url(re.compile(r"/runs/\d+$"))
    step = page.get_by_role("listitem").filter(has=page.get_by_role("heading", name="send_oms"))
    expect(step).to_contain_text("Input")
    expect(step).to_contain_text("WEB-700")  # the mapped order the OMS refused

    page.go_back()
    page.get_by_role("button", name=re.compile(r"Acknowledge alert")).click()
    expect(page.get_by_text("owner@flowgate.local", exact=False).first).to_be_visible()
    expect(page.get_by_text("acknowledged").first).to_be_visible()
    assert console_errors == []
