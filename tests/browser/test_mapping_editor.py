"""The mapping editor, samples, test run and Runs page in a real browser against the real app.

On the seeded demo flow (web orders → OMS): a web-shop order arrives by webhook and its run
shows up on /runs with each step's input and output; in the flow editor the analyst maps
two fields with the visual field mapper (a pick and a drag) and sees the server preview
update, reads a constructor back into the mapper, gets an invalid expression underlined at
the right position, captures the real run's payload as a sample, and test-runs the draft:
per-step output and exactly what the demo OMS would receive, then a failing step.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.browser.test_ui_smoke import ORDER, ROOT, watch_console

pytestmark = pytest.mark.slow

SCREENSHOTS = ROOT / "screenshots"
DOC_SCREENSHOTS = ROOT / "docs" / "screenshots"
MAP_STEP = "to_oms_order"


def _shot(page: Any, name: str, locator: Any = None) -> None:
    for folder in (SCREENSHOTS, DOC_SCREENSHOTS):
        folder.mkdir(parents=True, exist_ok=True)
        (locator or page).screenshot(path=str(folder / name))


def _watch_console(page: Any) -> list[str]:
    # An invalid expression is answered 422 by the preview on purpose (its error body
    # carries the code and position the editor underlines).
    return watch_console(page, (422, r"/api/v1/mappings/preview$"))


def _set_expression(page: Any, label: str, text: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text)  # as typed, without auto-closed brackets


def _editor_text(page: Any, label: str) -> str:
    """The document as CodeMirror renders it (one .cm-line per line)."""
    return page.get_by_role("textbox", name=label, exact=True).evaluate(
        "el => [...el.querySelectorAll('.cm-line')].map(l => l.textContent).join('\\n')"
    )


def _output(page: Any) -> Any:
    from playwright.sync_api import expect

    out = page.get_by_test_id("mapping-output")
    expect(out).to_be_visible()
    return json.loads(out.inner_text())


def test_mapping_helpers_unit() -> None:
    """The pure helpers (field paths, constructor read/write, format, error ranges) under
    node's own test runner."""
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is required")
        pytest.skip("node is not installed")
    result = subprocess.run(
        [node, "--test", str(ROOT / "frontend" / "src" / "editor" / "mapping")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    passed = re.search(r"^# pass (\d+)$", result.stdout, re.M)
    assert passed and int(passed.group(1)) >= 6, result.stdout[-2000:]
    assert re.search(r"^# fail 0$", result.stdout, re.M)


# The UI is backend-agnostic: one database is enough here.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_mapping_editor_test_run_and_runs_page(
    live_app: tuple[Any, str], browser_page: Any, run_worker: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    from app.demo.seed import DEMO_FLOW_SLUG, demo_logins

    app, base_url = live_app
    page = browser_page
    errors = _watch_console(page)
    password = demo_logins(app)["analyst@flowgate.local"]

    # -- A web-shop order arrives by webhook; the worker runs it.
    response = requests.post(f"{base_url}/hooks/{DEMO_FLOW_SLUG}", json=ORDER, timeout=10)
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    run_worker()

    page.goto(base_url + "/runs")
    page.get_by_label("Email").fill("analyst@flowgate.local")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/runs$"))

    # -- Runs page: the run is listed; filter by status and search by business key.
    runs_table = page.get_by_role("table", name="Recent runs")
    row = runs_table.get_by_role("row").filter(has=page.get_by_role("link", name=f"#{run_id}"))
    expect(row).to_contain_text("succeeded")
    page.get_by_label("Status").select_option("succeeded")
    page.get_by_label("Order number, SKU or e-mail").fill("1001")
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"/runs\?.*q=1001"))
    expect(row).to_have_count(1)
    _shot(page, "runs.png")

    # -- Run detail: the step timeline with each step's input and output.
    row.get_by_role("link", name=f"#{run_id}").click()
    expect(page.get_by_role("heading", name=f"Run #{run_id}", level=1)).to_be_visible()
    steps = page.locator("ol.steps > li")
    expect(steps.locator("h3")).to_have_text(["only_paid", MAP_STEP, "send_oms"])
    mapped = steps.nth(1)
    expect(mapped.locator("figure", has_text="Input")).to_contain_text('"order_number": 1001')
    expect(mapped.locator("figure", has_text="Output")).to_contain_text('"orderRef": "WEB-1001"')
    timeline = page.get_by_role("list", name="Step timeline")
    expect(timeline.get_by_role("listitem")).to_have_count(3)
    expect(timeline.get_by_role("listitem").nth(1)).to_contain_text(MAP_STEP)
    expect(page.locator("dl.summary")).to_contain_text("End to end")
    _shot(page, "run-detail.png")

    # -- The flow editor: select the map step; the mapping editor shows the live mapping.
    headers = _token_headers(app)
    flow_id = requests.get(f"{base_url}/api/v1/flows", headers=headers, timeout=10).json()["items"][
        0
    ]["id"]
    page.goto(f"{base_url}/flows/{flow_id}/edit")
    page.locator(f'.react-flow__node[data-id="{MAP_STEP}"]').click()
    label = "Mapping of to_oms_order"
    editor = page.get_by_role("textbox", name=label, exact=True)
    expect(editor).to_be_visible()
    expect(editor).to_contain_text("'orderRef': 'WEB-' & $string(order_number)")
    assert _output(page)["orderRef"] == "WEB-1001"

    expect(editor).to_have_attribute("data-language", "jsonata")  # our StreamLanguage

    # -- A filter's condition: same editor in condition mode, with the verdict on the sample.
    page.locator('.react-flow__node[data-id="only_paid"]').click()
    condition = page.get_by_role("textbox", name="Condition of only_paid", exact=True)
    expect(condition).to_contain_text("financial_status = 'paid'")
    expect(page.locator(".mapping-verdict")).to_have_text("Passes: the message continues")
    expect(page.locator(".field-mapper")).to_have_count(0)  # no mapper for a condition
    page.locator(".side-panel").screenshot(path=str(tmp_path / "condition.png"))
    page.locator(f'.react-flow__node[data-id="{MAP_STEP}"]').click()
    expect(editor).to_be_visible()

    # -- Visual field mapper: canonical order schema as targets; one pick, one drag.
    _set_expression(page, label, "")
    expect(page.get_by_text("Type an expression to see its output.").first).to_be_visible()
    mapper = page.locator(".field-mapper")
    mapper.get_by_label("Target fields").select_option(label="Canonical Order (v1)")
    expect(mapper.get_by_label("Source for orderNumber")).to_be_visible()
    expect(mapper.get_by_label("Source for customer.email")).to_be_visible()  # nested target
    mapper.get_by_label("Source for orderNumber").select_option("order_number")
    expect(editor).to_contain_text('"orderNumber": order_number')
    mapper.get_by_role("button", name="Source field currency", exact=True).drag_to(
        mapper.locator('li[data-target="currency"]')
    )
    expect(editor).to_contain_text('"currency": currency')
    _wait_output(page, {"orderNumber": 1001, "currency": "GBP"})
    # Click a source, then "Use" it for a target typed in by hand (nested path).
    mapper.get_by_label("New target field").fill("customer.name")
    mapper.get_by_role("button", name="Add target").click()
    mapper.get_by_role("button", name="Source field customer.last_name", exact=True).click()
    mapper.get_by_role("button", name="Use customer.last_name for customer.name").click()
    _wait_output(
        page,
        {"orderNumber": 1001, "currency": "GBP", "customer": {"name": "O'Brien-Ñúñez"}},
    )
    assert _editor_text(page, label) == (
        '{\n  "orderNumber": order_number,\n  "currency": currency,\n'
        '  "customer": {\n    "name": customer.last_name\n  }\n}'
    )
    page.set_viewport_size({"width": 1440, "height": 1200})
    page.locator(".mapping-editor").evaluate("el => el.scrollIntoView({block: 'start'})")
    _shot(page, "mapping.png")

    # -- Round trip: a constructor typed as text reads back into the mapper; what it cannot
    #    show as a field stays editable text.
    _set_expression(page, label, "{'orderNumber': order_number, 'currency': $uppercase(currency)}")
    expect(mapper.get_by_label("Source for orderNumber")).to_have_value("order_number")
    expect(mapper.get_by_label("Expression for currency")).to_have_value("$uppercase(currency)")
    _wait_output(page, {"orderNumber": 1001, "currency": "GBP"})
    # Format writes one field per line.
    page.get_by_role("button", name="Format").click()
    assert _editor_text(page, label) == (
        "{\n  'orderNumber': order_number,\n  'currency': $uppercase(currency)\n}"
    )

    # -- Completion of $functions and of the sample's field paths; bracket matching.
    _set_expression(page, label, "")
    page.keyboard.type("$su")
    popup = page.locator(".cm-tooltip-autocomplete")
    expect(popup.get_by_role("option", name=re.compile(r"^\$substring\b"))).to_be_visible()
    page.keyboard.type("m")
    expect(popup.get_by_role("option", selected=True)).to_contain_text("$sum")
    page.wait_for_timeout(150)  # CodeMirror ignores Enter for 75 ms after the list changes
    page.keyboard.press("Enter")
    page.keyboard.type("line_items.quan")
    expect(popup.get_by_role("option", selected=True)).to_contain_text("line_items.quantity")
    page.wait_for_timeout(150)
    page.keyboard.press("Enter")
    page.keyboard.type(")")
    assert _editor_text(page, label) == "$sum(line_items.quantity)"
    expect(page.locator(".mapping-cm .cm-matchingBracket")).to_have_count(2)
    _wait_output(page, 6)  # 1 + 2 + 3 items

    # -- An invalid expression: the error is shown and underlined at its position.
    _set_expression(page, label, "$sum(")
    error = page.get_by_test_id("mapping-error")
    expect(error).to_have_attribute("data-code", "S0203")
    expect(error).to_have_attribute("data-position", "5")
    expect(error).to_contain_text("S0203 at line 1, column 5: Expected ) before end of expression")
    _expect_marker(page, label, 4, 5)
    _set_expression(page, label, "{\n  'total': $sum(line_items.quantity,\n  'x': }")
    expect(error).to_have_attribute("data-position", "45")  # just past the ':' of 'x':
    expect(error).to_contain_text("S0202 at line 3, column 6: Expected ), got :")
    _expect_marker(page, label, 44, 45)
    expect(page.locator(".mapping-cm .cm-lintRange-error")).to_have_text(":")
    _set_expression(page, label, ORDER_MAP)
    _wait_output(page, {"orderRef": "WEB-1001", "lines": 3})

    # -- Samples: capture the real run's payload as a second sample.
    page.get_by_role("tab", name=re.compile(r"^Samples")).click()
    page.get_by_role("button", name="Capture from a recent run").click()
    page.get_by_role("button", name=f"Run #{run_id}").click()
    expect(page.get_by_role("tab", name="Samples (2)")).to_be_visible()
    expect(page.get_by_label("Selected sample")).to_have_value("1")

    # -- Test run: per-step output and exactly what the demo OMS would receive.
    page.get_by_role("tab", name="Test run").click()
    page.get_by_role("button", name="Run test").click()
    result = page.get_by_test_id("test-run-result")
    expect(result.get_by_role("status")).to_contain_text("Passed")
    steps = result.locator("li.tr-step")
    expect(steps).to_have_count(3)
    expect(steps.locator(".tr-step-id")).to_have_text(["only_paid", MAP_STEP, "send_oms"])
    expect(steps.locator(".badge")).to_have_text(["succeeded"] * 3)
    steps.nth(1).locator("summary").click()
    expect(steps.nth(1).locator("figure", has_text="Output")).to_contain_text('"lines": 3')
    delivery = result.locator('li.tr-delivery[data-step="send_oms"]')
    expect(delivery).to_contain_text("Demo OMS")
    expect(delivery).to_contain_text(re.compile(r"POST http://127\.0\.0\.1:\d+/demo/oms/orders"))
    would_send = json.loads(delivery.locator("pre").inner_text())
    assert would_send == {"orderRef": "WEB-1001", "lines": 3}
    _shot(page, "test-run.png")

    # A failing step: shown as failed with its error, the canvas marks it, the rest skipped.
    page.locator(f'.react-flow__node[data-id="{MAP_STEP}"]').click()
    page.get_by_role("tab", name="Inspector").click()
    _set_expression(page, label, "{'n': $number('x' & order_number)}")
    page.get_by_role("tab", name="Test run").click()
    page.get_by_role("button", name="Run test").click()
    expect(result.get_by_role("status")).to_contain_text(f"Failed at {MAP_STEP}")
    failed = result.locator(f'li.tr-step[data-step="{MAP_STEP}"]')
    expect(failed.locator(".badge")).to_have_text("failed")
    expect(failed.get_by_role("alert")).to_contain_text("could not convert")
    expect(result.locator('li.tr-step[data-step="send_oms"] .badge')).to_have_text("skipped")
    expect(result.locator("li.tr-delivery")).to_have_count(0)
    # onResult: the canvas marks the failing step.
    expect(
        page.locator(f'.react-flow__node[data-id="{MAP_STEP}"]').get_by_label("Test run: failed")
    ).to_be_visible()

    # -- More ways to add a sample: paste (checked as JSON), upload, a retail sample.
    page.get_by_role("tab", name=re.compile(r"^Samples")).click()
    page.get_by_role("button", name="Paste JSON").click()
    page.get_by_label("Sample JSON").fill('{"order_number": ')
    page.get_by_role("button", name="Add sample").click()
    expect(page.get_by_role("alert").filter(has_text="Not valid JSON")).to_be_visible()
    page.get_by_label("Sample JSON").fill('{"order_number": 7, "financial_status": "paid"}')
    page.get_by_role("button", name="Add sample").click()
    expect(page.get_by_role("tab", name="Samples (3)")).to_be_visible()
    upload = tmp_path / "order.json"
    upload.write_text(json.dumps({**ORDER, "order_number": 8}), "utf-8")
    page.get_by_label("Upload a JSON sample file").set_input_files(str(upload))
    expect(page.get_by_role("tab", name="Samples (4)")).to_be_visible()
    expect(page.get_by_label("Selected sample")).to_have_value("3")
    page.get_by_role("button", name="Retail sample").click()
    page.get_by_role("button", name="WMS inventory levels").click()
    expect(page.get_by_role("tab", name="Samples (5)")).to_be_visible()
    page.get_by_text("Show Sample 5").click()
    expect(page.locator(".samples-preview pre")).to_contain_text('"warehouse": "LDS-01"')
    page.get_by_role("button", name="Remove sample").click()
    expect(page.get_by_role("tab", name="Samples (4)")).to_be_visible()
    # The uploaded order is now the selected sample: the test run uses it.
    page.get_by_label("Selected sample").select_option("3")
    page.locator(f'.react-flow__node[data-id="{MAP_STEP}"]').click()
    page.get_by_role("tab", name="Inspector").click()
    _set_expression(page, label, ORDER_MAP)
    page.get_by_role("tab", name="Test run").click()
    page.get_by_role("button", name="Run test").click()
    expect(result.locator("li.tr-delivery pre")).to_contain_text('"orderRef": "WEB-8"')

    # The samples are pinned to the flow: saved with the draft (definition.samples).
    expect(page.get_by_test_id("save-state")).to_contain_text(re.compile(r"saved · rev \d+"))
    flow = requests.get(f"{base_url}/api/v1/flows/{flow_id}", headers=headers, timeout=10).json()
    draft = requests.get(
        f"{base_url}/api/v1/flows/{flow_id}/versions/{flow['draft_version']}",
        headers=headers,
        timeout=10,
    ).json()
    assert [s.get("order_number") for s in draft["definition"]["samples"]] == [1001, 1001, 7, 8]

    # Nothing was sent by the test runs: still the one real run.
    runs = requests.get(f"{base_url}/api/v1/runs", headers=headers, timeout=10).json()
    assert runs["total"] == 1
    page.screenshot(path=str(tmp_path / "editor.png"), full_page=True)
    assert errors == []


ORDER_MAP = "{'orderRef': 'WEB-' & $string(order_number), 'lines': $count(line_items)}"


def _wait_output(page: Any, expected: Any) -> bool:
    from playwright.sync_api import expect

    out = page.get_by_test_id("mapping-output")
    expect(out).to_have_text(json.dumps(expected, indent=2, ensure_ascii=False))
    return True


def _expect_marker(page: Any, label: str, start: int, end: int) -> None:
    """The lint diagnostic covers [start, end) of the document (read from CodeMirror)."""
    from playwright.sync_api import expect

    expect(page.locator(".mapping-cm .cm-lintRange-error")).to_have_count(1)
    found = page.get_by_role("textbox", name=label, exact=True).evaluate(
        """el => {
            const mark = el.querySelector('.cm-lintRange-error');
            let pos = 0;
            for (const line of el.querySelectorAll('.cm-line')) {
                if (line.contains(mark)) {
                    const before = document.createRange();
                    before.setStart(line, 0);
                    before.setEndBefore(mark);
                    const from = pos + before.toString().length;
                    return [from, from + mark.textContent.length];
                }
                pos += line.textContent.length + 1;
            }
            return null;
        }"""
    )
    assert found == [start, end], found


def _token_headers(app: Any) -> dict[str, str]:
    from app.auth import issue_token
    from app.services.users import find_user

    with app.app_context():
        return {"Authorization": f"Bearer {issue_token(find_user('analyst@flowgate.local'))}"}
