"""Browser: issue #7 acceptance, "MTTD/MTTR appear on the flow page". From the flow list the
owner opens the demo flow's page: owner, live version, versions linked to their review pages,
health figures, the open alert while the demo OMS is down, then MTTD and MTTR once it has
recovered; Edit opens the editor. Also: the seeded demo OMS connection tests as HTTP 200 (its
base URL answers directly, no redirect)."""

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


def test_flow_page_shows_versions_health_alerts_mttd_and_mttr(
    live_app: tuple[Any, str], browser_page: Any, run_worker: Any
) -> None:
    from playwright.sync_api import expect

    from app.demo import set_oms_outage
    from app.demo.seed import demo_logins
    from app.services import alerts

    app, base_url = live_app
    page = browser_page
    errors = watch_console(page)

    # The demo OMS goes down: three orders fail and an alert opens.
    set_oms_outage(True)
    for number in (7101, 7102, 7103):
        r = requests.post(
            f"{base_url}/hooks/web-orders-oms", json={**ORDER, "order_number": number}, timeout=10
        )
        assert r.status_code == 202, r.text
    run_worker()
    assert alerts.evaluate(app)["opened"] >= 1

    page.goto(base_url + "/flows")
    page.get_by_label("Email").fill("owner@flowgate.local")
    page.get_by_label("Password").fill(demo_logins(app)["owner@flowgate.local"])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/flows$"))
    page.get_by_role("table", name="Flows").get_by_role(
        "link", name="Web orders → OMS", exact=True
    ).click()
    expect(page).to_have_url(re.compile(r"/flows/\d+$"))
    flow_id = int(re.search(r"/flows/(\d+)$", page.url).group(1))  # type: ignore[union-attr]
    expect(page.get_by_role("heading", name="Web orders → OMS", level=1)).to_be_visible()

    overview = page.get_by_role("region", name="Overview")
    expect(overview).to_contain_text("owner@flowgate.local")
    live_link = page.get_by_test_id("live-version").get_by_role("link", name="v1")
    expect(live_link).to_have_attribute("href", f"/reviews/{flow_id}/1")
    versions = page.get_by_role("table", name="Versions")
    expect(versions.get_by_role("row").filter(has_text="v1")).to_contain_text("live")
    expect(versions.get_by_role("link", name="Review page of v1")).to_have_attribute(
        "href", f"/reviews/{flow_id}/1"
    )

    health = page.get_by_role("region", name="Health")
    expect(health).to_contain_text("Runs (last hour)")
    expect(health.get_by_role("img", name=re.compile(r"^Last 24 hours: 3 runs"))).to_be_visible()

    reliability = page.get_by_role("region", name="Reliability")
    [open_alert] = alerts.list_alerts(state="active", flow_id=flow_id, limit=10, offset=0)[0]
    expect(reliability.get_by_role("link", name=f"Alert #{open_alert['id']}")).to_be_visible()
    expect(page.get_by_test_id("mttd-last")).to_have_text(re.compile(r"^\d+(\.\d+)? (s|min|h)$"))
    expect(page.get_by_test_id("mttr-last")).to_have_text("—")  # not recovered yet

    # The OMS is back: the next order goes through and the alert resolves itself.
    set_oms_outage(False)
    r = requests.post(
        f"{base_url}/hooks/web-orders-oms", json={**ORDER, "order_number": 7104}, timeout=10
    )
    assert r.status_code == 202, r.text
    run_worker()
    assert alerts.evaluate(app)["resolved"] == 1
    page.reload()
    expect(page.get_by_test_id("mttr-last")).to_have_text(re.compile(r"^\d+(\.\d+)? (s|min|h)$"))
    expect(reliability.get_by_role("link", name=re.compile(r"Alert #"))).to_have_count(0)
    expect(reliability).to_contain_text("0not resolved")

    # Recent runs and Edit lead on.
    expect(page.get_by_role("link", name="Recent runs")).to_have_attribute(
        "href", f"/runs?flow={flow_id}"
    )
    page.get_by_role("link", name="Edit", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/flows/{flow_id}/edit$"))
    expect(page.get_by_test_id("save-state")).to_be_visible()

    # The seeded demo OMS connection answers its base URL directly (not "✓ HTTP 308").
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Connections").click()
    page.get_by_role("button", name="Test connection Demo OMS").click()
    result = page.get_by_role("status").filter(has_text="OK:")
    expect(result).to_contain_text(re.compile(r"HTTP 200 in \d+ ms"))
    assert errors == [], errors
