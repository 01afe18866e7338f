"""Browser: issues #3/#4 through the UI only. The demo analyst edits a flow in the editor,
opens "Submit for review", fills the whole integration contract in the dialog (systems,
business objects, a PII field, SLA, owners, on-call) and submits; the demo owner finds the
version on /reviews, sees the contract on the review page and approves it: it goes live."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import requests

from tests.browser.test_editor_canvas import _select_node, _sign_in, _wait_saved, _watch_console

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


def test_analyst_fills_the_contract_in_the_editor_and_owner_approves(
    live_app: tuple[Any, str], browser_page: Any
) -> None:
    from playwright.sync_api import expect

    from app.auth import issue_token
    from app.demo.seed import DEMO_FLOW_SLUG, demo_logins
    from app.services.users import find_user

    app, base_url = live_app
    page = browser_page
    errors = _watch_console(page)
    logins = demo_logins(app)
    analyst = {"Authorization": f"Bearer {issue_token(find_user('analyst@flowgate.local'))}"}
    owner_id = find_user("owner@flowgate.local").id
    analyst_id = find_user("analyst@flowgate.local").id

    # A new flow with a complete draft (the demo's definition) but no contract yet.
    flows = requests.get(f"{base_url}/api/v1/flows", headers=analyst, timeout=10).json()["items"]
    demo = next(f for f in flows if f["slug"] == DEMO_FLOW_SLUG)
    live = requests.get(
        f"{base_url}/api/v1/flows/{demo['id']}/versions/{demo['live_version']}",
        headers=analyst,
        timeout=10,
    ).json()
    created = requests.post(
        f"{base_url}/api/v1/flows",
        json={"name": "Web orders to OMS, EU shop", "description": "Submitted through the UI"},
        headers=analyst,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    flow_id = created.json()["id"]
    saved = requests.put(
        f"{base_url}/api/v1/flows/{flow_id}/draft",
        json={"definition": copy.deepcopy(live["definition"])},
        headers=analyst,
        timeout=10,
    )
    assert saved.status_code == 200, saved.text
    number = saved.json()["version"]
    assert saved.json()["problems"] == []

    # -- Analyst: an edit in the editor (autosaved), then the contract dialog.
    _sign_in(page, base_url, "analyst@flowgate.local", logins["analyst@flowgate.local"])
    page.goto(f"{base_url}/flows/{flow_id}/edit")
    expect(page.get_by_role("heading", name="Web orders to OMS, EU shop")).to_be_visible()
    _wait_saved(page)
    _select_node(page, "to_oms_order")
    inspector = page.get_by_role("region", name=re.compile("Inspector"))
    inspector.get_by_label("Name", exact=True).fill("Shop order to OMS order")
    expect(page.get_by_test_id("save-state")).to_contain_text("Unsaved")
    _wait_saved(page)
    submit = page.get_by_role("button", name="Submit for review")
    expect(submit).to_be_enabled()
    submit.click()
    dialog = page.get_by_role("dialog", name=f"Submit version {number} for review")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Source system")).to_have_value("")  # nothing prefilled

    # An empty contract is refused with what is missing named.
    dialog.get_by_role("button", name="Submit for review").click()
    expect(dialog.get_by_role("alert")).to_contain_text("on_call.email")

    dialog.get_by_label("Source system").select_option(label="Web shop")
    dialog.get_by_role("group", name="Destination systems").get_by_label("OMS").check()
    dialog.get_by_role("group", name="Business objects").get_by_label("order").check()
    dialog.get_by_role("group", name="Business objects").get_by_label("customer").check()
    dialog.get_by_label("Field destination").select_option(label="OMS")
    dialog.get_by_label("Field name").fill("email")
    dialog.get_by_label("PII", exact=True).check()
    dialog.get_by_role("button", name="Add field").click()
    dialog.get_by_label("Field name").fill("orderRef")
    dialog.get_by_role("button", name="Add field").click()
    expect(dialog.get_by_label("email is personal data (PII)")).to_be_checked()
    expect(dialog.get_by_label("orderRef is personal data (PII)")).not_to_be_checked()
    dialog.get_by_label("Trigger", exact=True).fill("webhook from the shop")
    dialog.get_by_label("Expected frequency").fill("real time")
    dialog.get_by_label("Volume per day").fill("800")
    dialog.get_by_label("Peak per minute").fill("30")
    dialog.get_by_label("Max end-to-end latency (seconds)").fill("120")
    dialog.get_by_role("group", name="Business days").get_by_label("Sat").check()
    dialog.get_by_label("Business hours start").fill("07:30")
    dialog.get_by_label("Max attempts").fill("6")
    dialog.get_by_label("Max age (seconds)").fill("86400")
    dialog.get_by_label("Dead-letter handling").fill("support replays after fixing the order")
    dialog.get_by_label("Business owner").select_option(label="Olu Owner (owner@flowgate.local)")
    dialog.get_by_label("Technical owner").select_option(
        label="Ada Analyst (analyst@flowgate.local)"
    )
    dialog.get_by_label("On-call name").fill("Ada Lovelace")
    dialog.get_by_label("On-call e-mail").fill("oncall@example.test")
    dialog.get_by_role("button", name="Submit for review").click()
    expect(dialog).to_be_hidden()
    expect(page).to_have_url(re.compile(rf"/flows\?submitted={flow_id}$"))
    notice = page.get_by_role("status").filter(has_text=f"v{number} was submitted for review")
    expect(notice).to_contain_text("Web orders to OMS, EU shop")
    expect(notice.get_by_role("link", name="Open the review")).to_have_attribute(
        "href", f"/reviews/{flow_id}/{number}"
    )

    # What the server stored is what was typed.
    version = requests.get(
        f"{base_url}/api/v1/flows/{flow_id}/versions/{number}", headers=analyst, timeout=10
    ).json()
    assert version["status"] == "in_review"
    steps = {s["id"]: s for s in version["definition"]["steps"]}
    assert steps["to_oms_order"]["name"] == "Shop order to OMS order"
    contract = version["contract"]
    systems = requests.get(f"{base_url}/api/v1/systems", headers=analyst, timeout=10).json()
    ids = {s["name"]: s["id"] for s in systems["items"]}
    assert contract["source_system_id"] == ids["Web shop"]
    assert contract["destination_system_ids"] == [ids["OMS"]]
    assert sorted(contract["business_objects"]) == ["customer", "order"]
    assert contract["fields"] == [
        {"destination_system_id": ids["OMS"], "field": "email", "pii": True},
        {"destination_system_id": ids["OMS"], "field": "orderRef", "pii": False},
    ]
    assert contract["sla"]["max_latency_seconds"] == 120
    assert contract["sla"]["business_hours"]["days"] == [0, 1, 2, 3, 4, 5]
    assert contract["sla"]["business_hours"]["start"] == "07:30"
    assert (contract["volume_per_day"], contract["peak_per_minute"]) == (800, 30)
    assert contract["error_policy"]["max_attempts"] == 6
    assert (contract["business_owner_id"], contract["technical_owner_id"]) == (owner_id, analyst_id)
    assert contract["on_call"] == {
        "name": "Ada Lovelace",
        "email": "oncall@example.test",
        "webhook_url": None,
    }
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    # -- Owner: the version waits on /reviews; the review page shows the contract; approve.
    _sign_in(page, base_url, "owner@flowgate.local", logins["owner@flowgate.local"], "/reviews")
    page.get_by_role("link", name=re.compile(rf"Review .*EU shop.* v{number}")).click()
    expect(page).to_have_url(re.compile(rf"/reviews/{flow_id}/{number}$"))
    contract_region = page.get_by_role("region", name="Integration contract")
    expect(contract_region).to_contain_text("oncall@example.test")
    expect(contract_region).to_contain_text("email")
    approve = page.get_by_role("button", name="Approve")
    expect(approve).to_be_enabled()
    approve.click()
    expect(page.locator(".page-heading .badge")).to_contain_text(re.compile("live", re.I))
    flow_now = requests.get(f"{base_url}/api/v1/flows/{flow_id}", headers=analyst, timeout=10)
    assert flow_now.json()["live_version"] == number
    # The only console error allowed: the deliberately empty contract's 422.
    unexpected = [e for e in errors if not ("status of 422" in e and e.endswith("/submit)"))]
    assert unexpected == [], unexpected
