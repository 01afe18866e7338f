"""Browser: the flow page's Trigger panel (GET /api/v1/flows/<id>/trigger) shows the demo
flow's webhook URL, and its review page lists destination idempotency; no console errors."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.test_ui_smoke import watch_console

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


def test_flow_page_shows_the_trigger_panel(live_app: tuple[Any, str], browser_page: Any) -> None:
    from playwright.sync_api import expect

    from app.demo.seed import demo_logins

    app, base_url = live_app
    page = browser_page
    errors = watch_console(page)

    page.goto(base_url + "/flows")
    page.get_by_label("Email").fill("analyst@flowgate.local")
    page.get_by_label("Password").fill(demo_logins(app)["analyst@flowgate.local"])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/flows$"))
    page.get_by_role("table", name="Flows").get_by_role(
        "link", name="Web orders → OMS", exact=True
    ).click()
    expect(page).to_have_url(re.compile(r"/flows/\d+$"))

    trigger = page.get_by_role("region", name="Trigger")
    expect(trigger).to_contain_text("webhook")
    expect(trigger).to_contain_text("/hooks/web-orders-oms")
    expect(trigger).to_contain_text("Accepting")

    # The review page lists each destination's idempotency next to the guardrails.
    flow_id = int(re.search(r"/flows/(\d+)$", page.url).group(1))  # type: ignore[union-attr]
    page.goto(f"{base_url}/reviews/{flow_id}/1")
    table = page.get_by_role("table", name="Destination idempotency")
    expect(table).to_contain_text("http")
    expect(table).to_contain_text("by key")
    assert errors == []
