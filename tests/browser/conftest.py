"""Browser fixtures: Debian's Chromium driven by Playwright (never `playwright install`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.test_ui_smoke import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS


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
