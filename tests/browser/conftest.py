"""Browser fixtures: Debian's Chromium driven by Playwright (never `playwright install`)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.test_ui_smoke import CHROMIUM, CHROMIUM_ARGS, DIST_INDEX, ROOT, TIMEOUT_MS


@pytest.fixture
def browser_page() -> Iterator[Any]:
    """A fresh Chromium page (system browser, headless) with a 10 s default timeout."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not os.path.exists(CHROMIUM):
        msg = f"{CHROMIUM} is missing: apt-get install -y chromium (or set CHROMIUM)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(TIMEOUT_MS)
            sync_api.expect.set_options(timeout=TIMEOUT_MS)
            yield context.new_page()
            context.close()
        finally:
            browser.close()


@pytest.fixture
def live_app(app: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    """The test app served over HTTP on 127.0.0.1:<free port>, with the demo seeded."""
    from werkzeug.security import generate_password_hash
    from werkzeug.serving import make_server

    from app.demo.seed import seed_demo
    from app.services import users

    if not DIST_INDEX.is_file():
        pytest.fail(
            f"{DIST_INDEX.relative_to(ROOT)} is missing: build the web UI first with "
            "`npm --prefix frontend ci && npm --prefix frontend run build` (or `make install`)."
        )
    # scrypt costs ~150 ms per hash; a cheap but real hash keeps sign-in checks honest.
    monkeypatch.setattr(
        users, "generate_password_hash", lambda pw: generate_password_hash(pw, "pbkdf2:sha256:1000")
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="ui-smoke-server", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{server.server_port}"
    try:
        assert app.config["FLOWGATE_EGRESS_ALLOW"] == ["127.0.0.0/8"]  # the demo OMS is local
        assert seed_demo(app, base_url) is True
        yield app, base_url
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
