"""Route and split on the canvas, in a real browser: from the palette, a route with two cases
(each case its own output handle / "Connect to…" branch) and a split of the order lines, then
a test run on the 3-line sample order that shows one delivery per line."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.browser.test_editor_canvas import (
    _connect_in_inspector,
    _draft,
    _drag_connect,
    _drag_from_palette,
    _select_node,
    _set_expression,
    _sign_in,
    _wait_saved,
    _watch_console,
)
from tests.browser.test_ui_smoke import ORDER

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


def test_route_with_two_cases_and_a_split_test_run(
    live_app: tuple[Any, str], browser_page: Any, make_user: Any
) -> None:
    from playwright.sync_api import expect

    from app.demo.seed import demo_logins

    app, base_url = live_app
    page = browser_page
    errors = _watch_console(page)
    logins = demo_logins(app)
    _sign_in(page, base_url, "analyst@flowgate.local", logins["analyst@flowgate.local"])
    page.get_by_role("link", name="New flow").click()
    page.get_by_label("Name").fill("Order lines by payment")
    page.get_by_role("button", name="Create and open the editor").click()
    expect(page).to_have_url(re.compile(r"/flows/\d+/edit$"))
    flow_id = int(re.search(r"/flows/(\d+)/edit", page.url).group(1))  # type: ignore[union-attr]

    _drag_from_palette(page, "Webhook", 110, 60)
    _drag_from_palette(page, "Route", 110, 240)
    _drag_from_palette(page, "Split", 370, 60)
    _drag_from_palette(page, "HTTP request", 370, 240)
    _drag_from_palette(page, "HTTP request", 370, 420)
    for node in ("trigger", "route_1", "split_1", "send_http_1", "send_http_2"):
        expect(page.locator(f'.react-flow__node[data-id="{node}"]')).to_be_visible()

    # The route's cases: rename the first, add a second; each gets its own output handle.
    _select_node(page, "route_1")
    inspector = page.get_by_role("region", name=re.compile("Inspector"))
    inspector.get_by_label("Case 1 name").fill("paid")
    _set_expression(page, "Condition of case paid", "financial_status = 'paid'")
    inspector.get_by_role("button", name="Add case").click()
    inspector.get_by_label("Case 2 name").fill("refunded")
    _set_expression(page, "Condition of case refunded", "financial_status = 'refunded'")
    route_node = page.locator('.react-flow__node[data-id="route_1"]')
    expect(route_node.locator(".react-flow__handle.source")).to_have_count(2)
    inspector.get_by_label(re.compile("Otherwise branch")).check()
    expect(route_node.locator(".react-flow__handle.source")).to_have_count(3)
    inspector.get_by_label(re.compile("Otherwise branch")).uncheck()
    expect(route_node.locator(".react-flow__handle.source")).to_have_count(2)

    # Join: trigger → route; case "paid" by dragging its handle; "refunded" in the inspector.
    _connect_in_inspector(page, "trigger", "route_1")
    _drag_connect(page, "route_1", "split_1", branch="paid")
    _connect_in_inspector(page, "route_1", "send_http_2", branch="refunded")
    _connect_in_inspector(page, "split_1", "send_http_1")
    expect(page.locator(".react-flow__edge")).to_have_count(4)

    # The split: the lines of the order, at most 50 of them.
    _select_node(page, "split_1")
    expect(page.get_by_role("textbox", name="Items of split_1", exact=True)).to_contain_text(
        "line_items"
    )
    inspector.get_by_label("Most items").fill("50")

    for node, path in (("send_http_1", "/order-lines"), ("send_http_2", "/refunds")):
        _select_node(page, node)
        inspector.get_by_role("combobox", name="Connection", exact=True).select_option(
            label="Demo OMS"
        )
        inspector.get_by_label("Path").fill(path)
    expect(page.get_by_role("heading", name="No problems")).to_be_visible()
    _wait_saved(page)

    # Test run on the 3-line order: the route picks "paid", the split gives 3 deliveries.
    page.get_by_role("tab", name=re.compile("Samples")).click()
    page.get_by_role("button", name="Paste JSON").click()
    page.get_by_label("Sample JSON").fill(json.dumps(ORDER))
    page.get_by_role("button", name="Add sample").click()
    page.get_by_role("tab", name="Test run").click()
    page.get_by_role("button", name="Run test").click()
    result = page.get_by_test_id("test-run-result")
    expect(result).to_contain_text("Passed")
    lines = len(ORDER["line_items"])
    for i in range(lines):  # each line its own step execution, and its own delivery
        expect(result.locator(f'.tr-step[data-step="send_http_1[{i}]"]')).to_be_visible()
        expect(result.locator(f'.tr-delivery[data-step="send_http_1[{i}]"]')).to_contain_text(
            "/order-lines"
        )
    expect(result.locator(".tr-delivery")).to_have_count(lines)
    expect(result.locator('.tr-step[data-step="send_http_2"]')).to_contain_text("skipped")
    expect(page.locator('[data-testid="node-split_1"]')).to_have_class(re.compile("run-succeeded"))
    expect(page.locator('[data-testid="node-send_http_1"]')).to_have_class(
        re.compile("run-succeeded")
    )
    _wait_saved(page)

    _, headers = make_user("analyst")
    doc = _draft(base_url, headers, flow_id)["definition"]
    assert {(e["from"], e["to"], e.get("case")) for e in doc["edges"]} == {
        ("trigger", "route_1", None),
        ("route_1", "split_1", "paid"),
        ("route_1", "send_http_2", "refunded"),
        ("split_1", "send_http_1", None),
    }
    steps = {s["id"]: s for s in doc["steps"]}
    assert steps["route_1"]["cases"] == [
        {"name": "paid", "condition": "financial_status = 'paid'"},
        {"name": "refunded", "condition": "financial_status = 'refunded'"},
    ]
    assert steps["split_1"]["expression"] == "line_items"
    assert steps["split_1"]["max_items"] == 50
    assert errors == []
