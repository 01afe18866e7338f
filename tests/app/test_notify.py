"""app.services.notify against a real SMTP server and HTTP sink on 127.0.0.1."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from sqlalchemy import select

from app import runtime
from app.extensions import db
from app.models import Notification
from app.services import notify
from tests.support.sink import Answer
from tests.support.smtp_server import SMTPTestServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_send_email_delivers_through_the_configured_smtp_server(
    app: Any, smtp: SMTPTestServer
) -> None:
    app.config["FLOWGATE_SMTP_URL"] = f"smtp://127.0.0.1:{smtp.port}"
    app.config["FLOWGATE_SMTP_FROM"] = "flowgate@shop.test"
    notify.send_email(["owner@shop.test", "owner@shop.test", "b@shop.test"], "Review", "Body")
    assert len(smtp.messages) == 1
    received = smtp.messages[0]
    assert received.rcpt_tos == ["owner@shop.test", "b@shop.test"]  # duplicates dropped
    assert received.mail_from == "flowgate@shop.test"
    assert received.message["Subject"] == "Review"
    assert received.message.get_content().strip() == "Body"


def test_send_email_is_a_logged_no_op_without_smtp_url(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app.config["FLOWGATE_SMTP_URL"] = None
    with caplog.at_level("INFO", logger="flowgate.notify"):
        notify.send_email(["a@shop.test"], "Subject", "Body")
    assert "notify.email_skipped" in caplog.text


def test_send_email_failure_raises_notification_error(app: Any) -> None:
    app.config["FLOWGATE_SMTP_URL"] = f"smtp://127.0.0.1:{free_port()}"
    with pytest.raises(notify.NotificationError):
        notify.send_email(["a@shop.test"], "Subject", "Body")


def test_refused_recipient_raises(app: Any, smtp: SMTPTestServer) -> None:
    app.config["FLOWGATE_SMTP_URL"] = f"smtp://127.0.0.1:{smtp.port}"
    smtp.recorder.refuse["gone@shop.test"] = "550 No such user"
    with pytest.raises(notify.NotificationError):
        notify.send_email(["gone@shop.test"], "Subject", "Body")


def test_post_webhook_sends_json(app: Any, sink: Any) -> None:
    notify.post_webhook(f"{sink.url}/hook", {"event": "flow.submitted", "flow_id": 3})
    assert [(r.method, r.path) for r in sink.requests] == [("POST", "/hook")]
    assert sink.requests[0].json() == {"event": "flow.submitted", "flow_id": 3}


def test_post_webhook_non_2xx_raises(app: Any, sink: Any) -> None:
    sink.scripted.append(Answer(status=500))
    with pytest.raises(notify.NotificationError, match="HTTP 500"):
        notify.post_webhook(sink.url, {"x": 1})


def test_post_webhook_goes_through_the_egress_guard(app: Any, sink: Any) -> None:
    app.config["FLOWGATE_EGRESS_ALLOW"] = []
    app.extensions.pop("flowgate.egress", None)
    app.extensions.pop("flowgate.http", None)
    with pytest.raises(notify.NotificationError):
        notify.post_webhook(sink.url, {"x": 1})
    assert sink.requests == []
    assert runtime.egress_policy(app).allows("127.0.0.1") is False


def test_notify_in_app_adds_a_row_committed_by_the_caller(app: Any, make_user: Any) -> None:
    user, _ = make_user("owner")
    notify.notify_in_app(user.id, "review.submitted", "Orders v2 to review", "Body", "/reviews/1/2")
    db.session.commit()
    rows = list(db.session.execute(select(Notification)).scalars())
    assert [(r.user_id, r.kind, r.link, r.read_at) for r in rows] == [
        (user.id, "review.submitted", "/reviews/1/2", None)
    ]
