"""Connections stay drawn when a node's handles change under them, in a real browser.

React Flow draws an edge from the handle positions it measured; a route whose case is renamed
keeps its size, so nothing re-measures it unless the node says its handles changed."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.test_editor_canvas import (
    _drag_from_palette,
    _sign_in,
    _watch_console,
    editor_app,  # noqa: F401  (the fixture: FLOWGATE_TEST_FRONTEND_DIST picks another build)
)
from tests.browser.test_editor_route_split import _connect_in_inspector

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


def test_renamed_route_case_keeps_its_edge_drawn(
    editor_app: tuple[Any, str],  # noqa: F811
    browser_page: Any,
) -> None:
    from playwright.sync_api import expect

    from app.demo.seed import demo_logins

    app, base_url = editor_app
    page = browser_page
    errors = _watch_console(page)
    _sign_in(page, base_url, "analyst@flowgate.local", demo_logins(app)["analyst@flowgate.local"])
    page.get_by_role("link", name="New flow").click()
    page.get_by_label("Name").fill("Renamed branches")
    page.get_by_role("button", name="Create and open the editor").click()
    expect(page).to_have_url(re.compile(r"/flows/\d+/edit$"))
    _drag_from_palette(page, "Webhook", 110, 60)
    _drag_from_palette(page, "Route", 110, 240)
    _drag_from_palette(page, "HTTP request", 370, 240)
    _connect_in_inspector(page, "trigger", "route_1")
    _connect_in_inspector(page, "route_1", "send_http_1", branch="case_1")
    edges = page.locator(".react-flow__edge")
    expect(edges).to_have_count(2)
    route = page.locator('.react-flow__node[data-id="route_1"]')
    size = route.bounding_box()

    # Same length, same node size: only the handle's id changes.
    inspector = page.get_by_role("region", name=re.compile("Inspector"))
    inspector.get_by_label("Case 1 name").fill("case_9")
    expect(route.locator('.react-flow__handle.source[data-handleid="case_9"]')).to_have_count(1)
    renamed = page.get_by_role("group", name="Connection from route_1 (case_9) to send_http_1")
    expect(renamed).to_have_count(1)
    expect(edges).to_have_count(2)
    after = route.bounding_box()
    assert size and after and (size["width"], size["height"]) == (after["width"], after["height"])

    # And again after a reload, from what the server has.
    expect(page.get_by_test_id("save-state")).to_contain_text(re.compile(r"saved · rev \d+"))
    page.reload()
    expect(page.locator(".react-flow__node")).to_have_count(3)
    expect(edges).to_have_count(2)
    expect(renamed).to_have_count(1)
    assert not errors, errors
