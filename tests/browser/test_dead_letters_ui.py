"""Browser test: dead letters and connections pages, against the real Flask app in Chromium.

A live flow delivers to the local test sink, which answers 400: the order becomes a dead
letter. An analyst sees it but cannot replay; the flow's owner previews a replay (the
destination "will send"), the sink is fixed, the owner replays and follows the progress
panel until the run succeeded; the sink then got exactly one more request, with the same
Idempotency-Key as the failed one. The Connections page shows the breaker state and runs
the connection check.

Same recipe as test_ui_smoke.py: SQLite only, a real WSGI server on a free loopback port,
the system Chromium (never ``playwright install``), the built UI in ``frontend/dist``.
Set FLOWGATE_SCREENSHOTS to a folder to keep the screenshots (default: the test's tmp dir).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.app.test_walking_skeleton import ORDER, live_flow
from tests.browser.test_ui_smoke import (
    DIST_INDEX,
    ROOT,
    watch_console,
)
from tests.support.sink import Answer

pytestmark = [
    pytest.mark.slow,
    # The UI is backend-agnostic; one database is enough here (no PostgreSQL half).
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

PASSWORD = "correct-horse-battery"  # what the make_user fixture gives every user


@pytest.fixture
def server_url(app: Any) -> Iterator[str]:
    """The test app served over HTTP on 127.0.0.1:<free port> (nothing seeded)."""
    from werkzeug.serving import make_server

    if not DIST_INDEX.is_file():
        pytest.fail(
            f"{DIST_INDEX.relative_to(ROOT)} is missing: build the web UI first with "
            "`npm --prefix frontend ci && npm --prefix frontend run build` (or `make install`)."
        )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="ui-dl-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


def _email(client: Any, headers: dict[str, str]) -> str:
    from app.extensions import db

    response = client.get("/api/v1/auth/me", headers=headers)
    db.session.rollback()  # end the shared session's transaction: SQLite must stay writable
    assert response.status_code == 200, response.get_json()
    return response.get_json()["user"]["email"]


def test_dead_letter_preview_replay_and_connections(
    app: Any,
    client: Any,
    make_user: Any,
    sink: Any,
    run_worker: Any,
    server_url: str,
    browser_page: Any,
    tmp_path: Path,
) -> None:
    page = browser_page
    from playwright.sync_api import expect

    from app.extensions import db

    shots = Path(os.environ.get("FLOWGATE_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)

    # -- Seed through the API: a live flow to the sink, which refuses the order for good.
    ctx = live_flow(client, make_user, sink)
    analyst_email = _email(client, ctx["headers"])
    owner_email = _email(client, ctx["owner_headers"])
    sink.default = Answer(status=400, body=b'{"error": "unknown sku"}')
    response = client.post(f"/hooks/{ctx['flow']['slug']}", json=ORDER)
    assert response.status_code == 202, response.get_json()
    run_id = response.json["run_id"]
    db.session.rollback()
    run_worker()
    assert len(sink.requests) == 1 and sink.requests[0].path == "/orders"
    failed_key = sink.requests[0].headers["Idempotency-Key"]
    assert failed_key.endswith(f"-run-{run_id}-send_oms")

    console_errors = watch_console(page)

    def sign_in(email: str, next_path: str) -> None:
        page.goto(server_url + next_path)
        expect(page).to_have_url(re.compile(r"/login\?next="))
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(re.compile(re.escape(next_path) + "$"))
        expect(page.get_by_text(email)).to_be_visible()

    nav = page.get_by_role("navigation", name="Main")
    table = page.get_by_role("table", name="Dead letters")
    row = table.get_by_role("row").filter(has=page.get_by_role("link", name=f"#{run_id}"))

    def assert_dead_letter_row() -> None:
        expect(page.get_by_role("heading", name="Dead letters", level=1)).to_be_visible()
        expect(row).to_have_count(1)
        expect(row).to_contain_text("Web orders to OMS")
        expect(row).to_contain_text("v1")
        expect(row).to_contain_text("1001")  # business key
        expect(row).to_contain_text("send_oms")  # failed step
        expect(row).to_contain_text("permanent")  # the reason
        expect(row.get_by_role("cell").filter(has_text=re.compile(r"^400$"))).to_have_count(1)

    # -- An analyst sees the dead letter, but no way to replay it.
    sign_in(analyst_email, "/dead-letters")
    expect(nav.get_by_role("link", name="Dead letters")).to_have_attribute("aria-current", "page")
    assert_dead_letter_row()
    expect(page.get_by_text("Only integration owners can replay dead letters")).to_be_visible()
    expect(page.get_by_role("button", name="Preview replay")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile(r"^Replay"))).to_have_count(0)
    expect(page.get_by_role("checkbox")).to_have_count(0)
    page.screenshot(path=str(shots / "dead-letters-analyst.png"), full_page=True)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))

    # -- The owner previews a replay: the destination will be sent the mapped order.
    sign_in(owner_email, "/dead-letters")
    assert_dead_letter_row()
    preview_button = page.get_by_role("button", name="Preview replay")
    expect(preview_button).to_be_disabled()  # nothing selected yet
    page.get_by_label(f"Select run #{run_id}").check()
    expect(page.get_by_text("1 run selected")).to_be_visible()
    expect(page.get_by_label("Original")).to_be_checked()
    preview_button.click()
    preview = page.get_by_role("region", name="Replay preview")
    expect(preview).to_be_visible()
    destination = preview.get_by_role("list", name=f"Destinations of run #{run_id}").get_by_role(
        "listitem"
    )
    expect(destination).to_have_count(1)
    expect(destination).to_contain_text("send_oms")
    expect(destination).to_contain_text("will send")
    expect(destination).to_contain_text(failed_key)  # the same idempotency key
    message = destination.locator("details")
    expect(message.locator("pre")).not_to_be_visible()  # collapsed until asked for
    message.get_by_text("Message that would be sent").click()
    expect(message.locator("pre")).to_contain_text('"orderRef": "WEB-1001"')
    page.screenshot(path=str(shots / "dead-letters-preview.png"), full_page=True)
    assert len(sink.requests) == 1  # a preview sends nothing

    # -- The destination is fixed; the owner replays and follows the progress panel.
    sink.default = Answer()  # 201
    page.get_by_role("button", name="Replay 1 run").click()
    progress_panel = page.get_by_role("region", name=re.compile(r"^Replay (in progress|finished)"))
    expect(progress_panel).to_contain_text("1 run queued again")
    progress = page.get_by_role("status", name="Replay progress")
    expect(progress).to_contain_text("queued")
    run_worker()  # the worker the replay was queued for
    expect(progress).to_contain_text("Done")
    expect(progress).to_contain_text("succeeded")
    expect(progress.locator(".progress-counts li")).to_have_text(["succeeded 1"])
    expect(page.get_by_role("heading", name="Replay finished")).to_be_visible()
    expect(page.get_by_text("No dead letters. Everything went through.")).to_be_visible()
    page.screenshot(path=str(shots / "dead-letters-replayed.png"), full_page=True)

    # Exactly one more request reached the sink, with the failed one's Idempotency-Key.
    assert len(sink.requests) == 2, [(r.method, r.path) for r in sink.requests]
    replayed = sink.requests[1]
    assert replayed.path == "/orders"
    assert replayed.headers["Idempotency-Key"] == failed_key
    assert replayed.json() == sink.requests[0].json()

    # -- Connections: target, stored secrets (never values), limits, breaker, the check.
    nav.get_by_role("link", name="Connections").click()
    expect(page).to_have_url(re.compile(r"/connections$"))
    expect(page.get_by_role("heading", name="Connections", level=1)).to_be_visible()
    connection = (
        page.get_by_role("table", name="Connections").get_by_role("row").filter(has_text="OMS")
    )
    expect(connection).to_have_count(1)
    expect(connection).to_contain_text("http")
    expect(connection).to_contain_text(sink.url)
    expect(connection).to_contain_text("token ✓ stored")
    expect(connection).to_contain_text("no limits")
    expect(connection.locator(".badge")).to_have_text("closed")
    expect(connection.locator(".badge")).to_have_class(re.compile(r"\bbreaker-closed\b"))
    assert "s3cr3t-token" not in page.content()
    connection.get_by_role("button", name="Test connection").click()
    check = connection.get_by_role("status")
    expect(check).to_contain_text(re.compile(r"HTTP 201 in \d+ ms"))
    expect(check).to_contain_text("OK")
    page.screenshot(path=str(shots / "connections.png"), full_page=True)

    assert console_errors == []
