"""Browser: the editor's autosave when an autosave comes due right as a save's answer lands.

The page's fetch and setTimeout are wrapped so that this race (seen as about 1 run in 8
ending with "Conflict: not saved") happens on every edit pair: the answer to a draft PUT is
delivered inside the next autosave timer's task, just before its callback, so React has not
rendered the new revision yet. Each save must still be sent alone and with the revision the
previous answer gave (no 409), and the last edit ends up on the server."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
import requests

from tests.browser.test_editor_canvas import _select_node, _sign_in, _wait_saved, _watch_console

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

# Makes the race happen every time: a draft PUT's answer is held back until the next
# autosave timer (700 ms) comes due; then, in that timer's task, the answer is delivered,
# the save's continuation runs (microtasks only), and only then the timer's own callback,
# before React has rendered the new state. Also records what each save sent and got.
RACE_SAVES = """
(() => {
  const log = { saves: [], inFlight: 0, maxInFlight: 0, raced: 0 };
  window.__saves = log;
  const realFetch = window.fetch.bind(window);
  const realSetTimeout = window.setTimeout.bind(window);
  let held = null;
  window.setTimeout = (fn, ms, ...args) => {
    if (ms !== 700 || typeof fn !== 'function') return realSetTimeout(fn, ms, ...args);
    return realSetTimeout(async () => {
      if (held) {
        const release = held;
        held = null;
        log.raced += 1;
        release();
        for (let i = 0; i < 100; i++) await Promise.resolve();
      }
      fn(...args);
    }, ms);
  };
  window.fetch = async (input, init = {}) => {
    const url = typeof input === 'string' ? input : input.url;
    const isSave = init.method === 'PUT' && /\\/api\\/v1\\/flows\\/\\d+\\/draft/.test(url);
    if (!isSave) return realFetch(input, init);
    const sent = JSON.parse(init.body).revision;
    log.inFlight += 1;
    log.maxInFlight = Math.max(log.maxInFlight, log.inFlight);
    const res = await realFetch(input, init);
    const body = await res.json();
    const answer = {
      ok: res.ok, status: res.status, statusText: res.statusText, headers: res.headers,
      json: () => Promise.resolve(body),
    };
    await new Promise((resolve) => {
      const release = () => {
        log.inFlight -= 1;
        log.saves.push({ sent, status: res.status, got: body.revision ?? null });
        resolve();
      };
      held = release;
      realSetTimeout(() => { if (held === release) { held = null; release(); } }, 1500);
    });
    return answer;
  };
})();
"""


@pytest.fixture
def editor_app(live_app: tuple[Any, str]) -> tuple[Any, str]:
    """The live app; FLOWGATE_TEST_FRONTEND_DIST points it at another UI build if set."""
    app, base_url = live_app
    if os.environ.get("FLOWGATE_TEST_FRONTEND_DIST"):
        app.config["FLOWGATE_FRONTEND_DIST"] = os.environ["FLOWGATE_TEST_FRONTEND_DIST"]
    return app, base_url


def test_autosave_sends_one_save_at_a_time_with_the_latest_revision(
    editor_app: tuple[Any, str], browser_page: Any
) -> None:
    from playwright.sync_api import expect

    from app.auth import issue_token
    from app.demo.seed import DEMO_FLOW_SLUG, demo_logins
    from app.services.users import find_user

    app, base_url = editor_app
    page = browser_page
    errors = _watch_console(page)
    analyst = {"Authorization": f"Bearer {issue_token(find_user('analyst@flowgate.local'))}"}
    flows = requests.get(f"{base_url}/api/v1/flows", headers=analyst, timeout=10).json()["items"]
    flow_id = next(f["id"] for f in flows if f["slug"] == DEMO_FLOW_SLUG)

    page.add_init_script(RACE_SAVES)
    _sign_in(page, base_url, "analyst@flowgate.local", demo_logins(app)["analyst@flowgate.local"])
    page.goto(f"{base_url}/flows/{flow_id}/edit")
    expect(page.get_by_test_id("save-state")).to_be_visible()
    _select_node(page, "to_oms_order")
    name = page.get_by_role("region", name=re.compile("Inspector")).get_by_label("Name", exact=True)
    # An edit, a save in flight, another edit whose autosave comes due as the answer lands.
    for i in range(6):
        name.fill(f"Order mapping {i}a")
        page.wait_for_timeout(900)  # its autosave is sent; the answer is held
        name.fill(f"Order mapping {i}b")
        page.wait_for_timeout(1000)  # this edit's autosave timer delivers it, then fires
    last = "Order mapping 5b"
    _wait_saved(page)
    expect(page.get_by_test_id("save-state")).not_to_contain_text("Conflict")

    log = page.evaluate("window.__saves")
    saves = log["saves"]
    assert log["raced"] >= 3, log  # the race was provoked
    assert len(saves) >= 6, saves
    assert log["maxInFlight"] == 1, log
    assert [s["status"] for s in saves] == [200] * len(saves), saves
    assert saves[0]["sent"] == 0  # the first change starts the draft
    for before, after in zip(saves, saves[1:], strict=False):
        assert after["sent"] == before["got"], saves  # never an old revision

    flow = requests.get(f"{base_url}/api/v1/flows/{flow_id}", headers=analyst, timeout=10).json()
    draft = requests.get(
        f"{base_url}/api/v1/flows/{flow_id}/versions/{flow['draft_version']}",
        headers=analyst,
        timeout=10,
    ).json()
    assert draft["revision"] == saves[-1]["got"]
    assert {s["id"]: s for s in draft["definition"]["steps"]}["to_oms_order"]["name"] == last
    expect(page.get_by_test_id("save-state")).to_contain_text(f"rev {draft['revision']}")
    assert errors == [], errors
