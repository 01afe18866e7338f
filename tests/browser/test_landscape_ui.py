"""Browser test: the map shows a failing flow's edge red; dashboard; systems create/edit/delete.

Same recipe as test_dead_letters_ui.py: SQLite only, the real app on a loopback port, the
system Chromium, the built UI. Set FLOWGATE_SCREENSHOTS to a folder to keep map.png and
dashboard.png (default: the test's tmp dir).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.app.test_walking_skeleton import ORDER, live_flow
from tests.browser.test_dead_letters_ui import PASSWORD, _email
from tests.browser.test_dead_letters_ui import server_url as server_url  # noqa: F401 (fixture)
from tests.browser.test_ui_smoke import watch_console
from tests.support.sink import Answer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]
# The one refused request the test makes on purpose: deleting a system still referenced.


def seed(client: Any, make_user: Any, sink: Any) -> dict[str, Any]:
    """A live flow "Test shop → Test OMS" whose recent runs failed, a healthy ERP flow."""
    from app.extensions import db
    from app.models import Flow, FlowVersion, Run, System
    from app.models._types import utcnow

    ctx = live_flow(client, make_user, sink)
    sink.default = Answer(status=400, body=b'{"error": "unknown sku"}')
    for n in (1, 2):
        r = client.post(f"/hooks/{ctx['flow']['slug']}", json=dict(ORDER, order_number=n))
        assert r.status_code == 202, r.get_json()
    erp = System(name="ERP", kind="erp", criticality="critical")
    db.session.add_all([erp, System(name="WMS", kind="wms", criticality="high")])
    db.session.flush()
    shop = db.session.query(System).filter_by(name="Test shop").one()
    flow = Flow(name="Stock from ERP", slug="stock-from-erp")
    version = FlowVersion(
        flow=flow,
        number=1,
        status="live",
        definition={"trigger": {"type": "webhook"}, "steps": []},
        content_hash="x",
        contract={"source_system_id": erp.id, "destination_system_ids": [shop.id]},
        live_since=utcnow(),
    )
    db.session.add_all([flow, version])
    db.session.flush()
    now = utcnow()
    for n in range(5):
        db.session.add(
            Run(
                flow_id=flow.id,
                flow_version_id=version.id,
                trigger_kind="webhook",
                payload={"sku": f"SKU-{n}"},
                payload_hash=str(n),
                status="succeeded",
                received_at=now,
                finished_at=now,
            )
        )
    db.session.commit()
    return ctx


def test_map_dashboard_and_systems(
    app: Any,
    client: Any,
    make_user: Any,
    sink: Any,
    run_worker: Any,
    server_url: str,  # noqa: F811
    browser_page: Any,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    from app.extensions import db

    page = browser_page
    shots = Path(os.environ.get("FLOWGATE_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    ctx = seed(client, make_user, sink)
    owner_email = _email(client, ctx["owner_headers"])
    db.session.rollback()
    run_worker()

    # The refused delete of a system in use answers 409 on purpose.
    console_errors = watch_console(page, (409, r"/api/v1/systems/\d+$"))

    page.goto(server_url + "/map")
    page.get_by_label("Email").fill(owner_email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/map$"))
    expect(page.get_by_role("heading", name="Map", level=1)).to_be_visible()

    # -- The failing flow's edge is red, with an accessible label; the ERP flow's is green.
    red = page.locator(".react-flow__edge.edge-red")
    expect(red).to_have_count(1)
    expect(red).to_have_attribute("aria-label", "Test shop → Test OMS: failing")
    stroke = red.locator("path.react-flow__edge-path").evaluate("el => getComputedStyle(el).stroke")
    assert stroke == "rgb(196, 41, 28)", stroke
    green = page.locator(".react-flow__edge.edge-green")
    expect(green).to_have_attribute("aria-label", "ERP → Test shop: healthy")
    for name in ("Test shop", "Test OMS", "ERP", "WMS"):
        expect(page.locator(".react-flow__node", has_text=name)).to_have_count(1)
    legend = page.get_by_role("list", name="Legend")
    expect(legend).to_contain_text("Failing")
    edges_table = page.get_by_role("table", name="Integrations on the map")
    failing = edges_table.get_by_role("row").filter(has_text="Web orders to OMS")
    expect(failing).to_contain_text("failing")
    expect(failing).to_contain_text("2 of 2 runs failed")
    risks = page.get_by_role("table", name="Integrations by risk")
    expect(risks.get_by_role("row").nth(1)).to_contain_text("Web orders to OMS")  # riskiest
    expect(risks).to_contain_text("Recent failure rate ×5")
    expect(page.get_by_role("link", name="Export integrations CSV")).to_have_attribute(
        "href", "/api/v1/landscape/export?format=csv&table=integrations"
    )
    page.screenshot(path=str(shots / "map.png"), full_page=True)

    # -- Dashboard: overall and per-flow cards with sparklines.
    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("link", name="Dashboard").click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    card = page.get_by_role("article", name="Web orders to OMS")
    expect(card).to_be_visible()
    expect(card.locator("dl")).to_contain_text("Dead letters2")
    expect(
        card.get_by_role("img", name="Web orders to OMS, last 24 hours: 2 runs, 2 failed")
    ).to_be_visible()
    stock = page.get_by_role("article", name="Stock from ERP")
    expect(stock.locator("dl")).to_contain_text("Success rate100 %")
    page.screenshot(path=str(shots / "dashboard.png"), full_page=True)

    # -- Systems: create, edit, a refused delete, a confirmed delete.
    nav.get_by_role("link", name="Systems").click()
    expect(page).to_have_url(re.compile(r"/systems$"))
    page.get_by_role("button", name="Add system").click()
    form = page.get_by_role("form", name="Add a system")
    form.get_by_label("Name").fill("Loyalty hub")
    form.get_by_label("Kind").select_option("loyalty")
    form.get_by_label("Criticality").select_option("high")
    form.get_by_label("Owner").select_option(label=owner_email)
    form.get_by_label("Notes").fill("Points and vouchers")
    form.get_by_role("button", name="Add system").click()
    table = page.get_by_role("table", name="Systems")
    row = table.get_by_role("row").filter(has_text="Loyalty hub")
    expect(row).to_contain_text("Loyalty")
    expect(row).to_contain_text("high")
    expect(row).to_contain_text(owner_email)

    page.get_by_role("button", name="Edit Loyalty hub").click()
    form = page.get_by_role("form", name="Edit Loyalty hub")
    form.get_by_label("Criticality").select_option("critical")
    form.get_by_role("button", name="Save changes").click()
    expect(row).to_contain_text("critical")
    expect(page.get_by_role("form")).to_have_count(0)

    page.get_by_role("button", name="Delete Test OMS").click()
    page.get_by_role("group", name="Confirm deleting Test OMS").get_by_role(
        "button", name="Yes, delete"
    ).click()
    expect(page.get_by_role("alert")).to_contain_text("still referenced")
    expect(table.get_by_role("row").filter(has_text="Test OMS")).to_have_count(1)

    page.get_by_role("button", name="Delete Loyalty hub").click()
    page.get_by_role("group", name="Confirm deleting Loyalty hub").get_by_role(
        "button", name="Yes, delete"
    ).click()
    expect(row).to_have_count(0)
    assert console_errors == []
