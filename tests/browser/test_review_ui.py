"""Browser: an analyst submits a change to the live demo flow with its contract, the owner
sees the edited mapping line in the diff (not the moved node) and approves; the analyst never
gets an approve button. Screenshot: screenshots/review.png (copied to docs/screenshots)."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.browser.test_ui_smoke import ROOT, watch_console

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

SCREENSHOTS = ROOT / "screenshots"


def sign_in(page: Any, base_url: str, email: str, password: str, target: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{base_url}{target}")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    expect(page.get_by_label("Email")).to_be_visible(timeout=20_000)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(re.escape(target) + "$"))


def test_submit_review_approve_through_the_ui(live_app: tuple[Any, str], browser_page: Any) -> None:
    from playwright.sync_api import expect

    from app.auth import issue_token
    from app.demo.seed import DEMO_FLOW_SLUG, demo_logins
    from app.services.users import find_user

    app, base_url = live_app
    page = browser_page
    logins = demo_logins(app)
    errors = watch_console(page, (422, r"/submit$"))  # the deliberately incomplete contract

    # -- The analyst edits one mapping line and moves a node, through the API (the editor's
    #    save), without sending a contract: the draft starts from the live one.
    analyst = {"Authorization": f"Bearer {issue_token(find_user('analyst@flowgate.local'))}"}
    flows = requests.get(f"{base_url}/api/v1/flows", headers=analyst, timeout=10).json()["items"]
    flow = next(f for f in flows if f["slug"] == DEMO_FLOW_SLUG)
    live = requests.get(
        f"{base_url}/api/v1/flows/{flow['id']}/versions/{flow['live_version']}",
        headers=analyst,
        timeout=10,
    ).json()
    doc = copy.deepcopy(live["definition"])
    mapping = next(s for s in doc["steps"] if s["id"] == "to_oms_order")
    assert "'orderRef': 'WEB-' & $string(order_number)" in mapping["expression"]
    mapping["expression"] = mapping["expression"].replace("'WEB-'", "'SHOP-'")
    doc["layout"]["only_paid"] = {"x": 300, "y": 40}  # a move: not a change
    saved = requests.put(
        f"{base_url}/api/v1/flows/{flow['id']}/draft",
        json={"definition": doc},
        headers=analyst,
        timeout=10,
    )
    assert saved.status_code == 200, saved.text
    number = saved.json()["version"]
    review_path = f"/reviews/{flow['id']}/{number}"

    # -- Analyst: the draft's review page, submit through the contract dialog.
    sign_in(page, base_url, "analyst@flowgate.local", logins["analyst@flowgate.local"], review_path)
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"version {number}")
    page.get_by_role("button", name="Submit for review").click()
    dialog = page.get_by_role("dialog", name=f"Submit version {number} for review")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Source system")).to_have_value(re.compile(r"\d+"))  # prefilled
    expect(dialog.get_by_label("On-call e-mail")).to_have_value("oncall@flowgate.local")
    # A contract with a hole is refused with the missing field named.
    dialog.get_by_label("On-call e-mail").fill("")
    dialog.get_by_role("button", name="Submit for review").click()
    expect(dialog.get_by_role("alert")).to_contain_text("on_call.email")
    dialog.get_by_label("On-call e-mail").fill("oncall@flowgate.local")
    dialog.get_by_role("button", name="Submit for review").click()
    expect(dialog).to_be_hidden()
    expect(page.locator(".page-heading .badge")).to_contain_text(re.compile("review", re.I))
    decision = page.get_by_role("region", name="Decision")
    expect(decision).to_contain_text("Only integration owners can approve or reject.")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))

    # -- Owner: notified, opens the review from the queue, sees the mapping line, approves.
    sign_in(page, base_url, "owner@flowgate.local", logins["owner@flowgate.local"], "/reviews")
    expect(page.get_by_role("button", name="Notifications, 1 unread")).to_be_visible()
    page.get_by_role("link", name=re.compile(rf"Review .* v{number}")).click()
    expect(page).to_have_url(re.compile(re.escape(review_path) + "$"))
    changes = page.get_by_role("region", name="Changes")
    expect(changes).to_contain_text("to_oms_order")
    diff = changes.get_by_label("Changes to expression")
    expect(diff.locator(".del")).to_contain_text("'orderRef': 'WEB-' & $string(order_number)")
    expect(diff.locator(".add")).to_contain_text("'orderRef': 'SHOP-' & $string(order_number)")
    expect(changes).not_to_contain_text("only_paid")  # moved, not changed
    expect(changes).not_to_contain_text("layout")
    guardrails = page.get_by_role("list", name="Guardrails")
    expect(guardrails).to_contain_text("pii_routing")
    expect(page.get_by_role("region", name="Integration contract")).to_contain_text("Same contract")
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "review.png"), full_page=True)
    approve = page.get_by_role("button", name="Approve")
    expect(approve).to_be_enabled()
    approve.click()
    expect(page.locator(".page-heading .badge")).to_contain_text(re.compile("live", re.I))
    flow_now = requests.get(f"{base_url}/api/v1/flows/{flow['id']}", headers=analyst, timeout=10)
    assert flow_now.json()["live_version"] == number
    statuses = {v["number"]: v["status"] for v in flow_now.json()["versions"]}
    assert statuses[live["number"]] == "retired"

    docs = ROOT / "docs" / "screenshots"
    docs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SCREENSHOTS / "review.png", docs / "review.png")
    assert Path(docs / "review.png").stat().st_size > 10_000
    assert errors == []
