"""Browser test of the admin Outbox tab: a webhook that gave up is listed with its redacted
error, "Retry now" queues it again, and the scheduler's next tick sends it."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from tests.browser.test_ui_smoke import watch_console
from tests.support.sink import Answer, Sink

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

SECRET = "T0001/B0002/s3cret-hook-path"


def test_admin_sees_a_failed_notification_and_retries_it(
    live_app: tuple[Any, str], browser_page: Any
) -> None:
    from playwright.sync_api import expect

    from app.demo.seed import demo_logins
    from app.extensions import db
    from app.models import OutboxMessage
    from app.models._types import utcnow
    from app.services import outbox

    app, base_url = live_app
    chat = Sink().start()
    try:
        chat.default = Answer(status=503)
        with app.app_context():
            message = outbox.webhook(
                f"{chat.url}/{SECRET}?token=x", {"event": "alert.opened"}, purpose="alert.opened"
            )
            db.session.commit()
            message_id = message.id
            now = utcnow()
            for _ in range(outbox.MAX_ATTEMPTS):  # every attempt answered 503: it gives up
                outbox.deliver_due(app, now=now)
                now += timedelta(hours=3)  # past the longest backoff
            assert db.session.get(OutboxMessage, message_id).status == "failed"
            db.session.remove()

        page = browser_page
        errors = watch_console(page)
        page.goto(base_url + "/login")
        page.get_by_label("Email").fill("admin@flowgate.local")
        page.get_by_label("Password").fill(demo_logins(app)["admin@flowgate.local"])
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(re.compile(r"/flows$"))
        page.goto(base_url + "/admin")
        page.get_by_role("navigation", name="Admin").get_by_role("link", name="Outbox").click()
        expect(page).to_have_url(re.compile(r"/admin/outbox$"))
        table = page.get_by_role("table", name="Notifications")
        failed = table.get_by_role("row").filter(has_text="alert.opened")
        expect(failed).to_contain_text("failed")
        expect(failed).to_contain_text("webhook answered HTTP 503")
        expect(failed).to_contain_text(f"{outbox.MAX_ATTEMPTS} / {outbox.MAX_ATTEMPTS}")
        assert SECRET not in page.content()

        chat.default = Answer(status=200)
        retry = re.compile(f"Retry now notification {message_id}")
        failed.get_by_role("button", name=retry).click()
        expect(page.get_by_role("status")).to_contain_text("will be sent within seconds")
        expect(page.get_by_text("No notifications failed.")).to_be_visible()
        with app.app_context():
            assert outbox.tick(app)["sent"] == 1
            db.session.remove()
        page.get_by_label("Show").select_option("sent")
        expect(table.get_by_role("row").filter(has_text="alert.opened")).to_contain_text("sent")
        assert len(chat.requests) == outbox.MAX_ATTEMPTS + 1
        assert errors == []
    finally:
        chat.stop()
