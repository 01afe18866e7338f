"""The notification outbox against a real SMTP server and a real HTTP webhook receiver on
127.0.0.1: retries with backoff, giving up, the admin list and retry-now, claims that never
double-send (PostgreSQL), review decisions that never wait for SMTP, redacted errors."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

from app.extensions import db
from app.models import AlertNotification, AuditEvent, OutboxMessage
from app.models._types import utcnow
from app.services import alerts, notify, outbox
from tests.app.test_alerts import alert_flow, fail_orders
from tests.app.test_contracts_and_notifications import setup as review_setup
from tests.support.contracts import complete_contract
from tests.support.sink import Answer, Sink
from tests.support.smtp_server import SMTPTestServer

SECRET_PATH = "/services/T0001/B0002/s3cretPathToken"
SECRET_QUERY = "token=q-s3cret-9f8e7d"


@pytest.fixture
def hanging_smtp() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a wedged relay)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def row(message_id: int) -> OutboxMessage:
    db.session.expire_all()
    found = db.session.get(OutboxMessage, message_id)
    assert found is not None
    return found


def queue_email(to: str = "oncall@shop.test", subject: str = "Disk full") -> int:
    message = outbox.email([to], subject, "Body", purpose="test")
    assert message is not None
    db.session.commit()
    return message.id


def test_smtp_down_retries_with_backoff_then_sends_exactly_once(app: Any) -> None:
    server = SMTPTestServer()  # the port is bound but nobody listens yet: refused
    app.config["FLOWGATE_SMTP_URL"] = f"smtp://127.0.0.1:{server.port}"
    message_id = queue_email()
    t0 = utcnow()

    assert outbox.deliver_due(app, now=t0)["retrying"] == 1
    first = row(message_id)
    assert (first.status, first.attempts) == ("pending", 1)
    assert "failed" in first.last_error and "refused" in first.last_error.lower()
    assert t0 + timedelta(seconds=24) <= first.next_attempt_at <= t0 + timedelta(seconds=36)
    # Not due yet: nothing is claimed, nothing is counted.
    assert sum(outbox.deliver_due(app, now=t0 + timedelta(seconds=20)).values()) == 0
    assert row(message_id).attempts == 1

    t1 = first.next_attempt_at
    assert outbox.deliver_due(app, now=t1)["retrying"] == 1
    second = row(message_id)
    assert second.attempts == 2  # the second wait is longer: 2 min ± 20 %
    assert t1 + timedelta(seconds=96) <= second.next_attempt_at <= t1 + timedelta(seconds=144)

    server.start()  # the relay is back
    try:
        assert outbox.deliver_due(app, now=second.next_attempt_at)["sent"] == 1
        for later in (1, 60, 600):  # nothing is ever sent again
            assert sum(outbox.deliver_due(app, now=utcnow() + timedelta(hours=later)).values()) == 0
        assert len(server.messages) == 1
        assert server.messages[0].rcpt_tos == ["oncall@shop.test"]
        assert server.messages[0].message["Subject"] == "Disk full"
        sent = row(message_id)
        assert (sent.status, sent.attempts, sent.next_attempt_at) == ("sent", 3, None)
        assert sent.sent_at is not None and "refused" in sent.last_error.lower()  # history
    finally:
        server.stop()


def test_gives_up_after_max_attempts_is_listed_for_admins_and_retry_now_sends_it(
    app: Any, client: Any, make_user: Any, chat: Sink
) -> None:
    chat.default = Answer(status=503)
    url = f"{chat.url}/hook"
    message = outbox.webhook(url, {"event": "alert.opened", "n": 1}, purpose="alert.opened")
    db.session.commit()
    now = utcnow()
    outcomes = []
    for _ in range(outbox.MAX_ATTEMPTS):
        counts = outbox.deliver_due(app, now=now)
        outcomes.append(next(k for k, v in counts.items() if v))
        now = row(message.id).next_attempt_at or now
    assert outcomes == ["retrying"] * (outbox.MAX_ATTEMPTS - 1) + ["failed"]
    gave_up = row(message.id)
    assert (gave_up.status, gave_up.attempts, gave_up.next_attempt_at) == (
        "failed",
        outbox.MAX_ATTEMPTS,
        None,
    )
    assert gave_up.last_error == "webhook answered HTTP 503"
    assert len(chat.requests) == outbox.MAX_ATTEMPTS
    # Failed rows are never picked up again by themselves.
    assert sum(outbox.deliver_due(app, now=now + timedelta(days=1)).values()) == 0

    _, admin_h = make_user("admin")
    _, owner_h = make_user("owner")
    listed = client.get("/api/v1/outbox?status=failed", headers=admin_h)
    assert listed.status_code == 200
    body = listed.get_json()
    assert body["total"] == 1 and body["counts"] == {"pending": 0, "sent": 0, "failed": 1}
    [item] = body["items"]
    assert item["id"] == message.id and item["status"] == "failed"
    assert item["attempts"] == item["max_attempts"] == outbox.MAX_ATTEMPTS
    assert item["recipient"] == f"http://127.0.0.1:{chat.server.server_address[1]}/…"
    assert client.get("/api/v1/outbox", headers=owner_h).status_code == 403
    assert client.get("/api/v1/outbox?status=nope", headers=admin_h).status_code == 422

    chat.default = Answer(status=200)
    r = client.post(f"/api/v1/outbox/{message.id}/retry", headers=admin_h)
    assert r.status_code == 200, r.get_json()
    assert (r.get_json()["status"], r.get_json()["attempts"]) == ("pending", 0)
    assert len(chat.requests) == outbox.MAX_ATTEMPTS  # the request itself sends nothing
    assert outbox.tick(app)["sent"] == 1
    assert len(chat.requests) == outbox.MAX_ATTEMPTS + 1
    assert chat.requests[-1].json() == {"event": "alert.opened", "n": 1}
    assert row(message.id).status == "sent"
    audit = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "notification.retried")
    ).scalar_one()
    assert audit.object_id == str(message.id) and audit.detail["attempts"] == outbox.MAX_ATTEMPTS
    # Only failed rows can be pushed; unknown ids are 404.
    again = client.post(f"/api/v1/outbox/{message.id}/retry", headers=admin_h)
    assert again.status_code == 409
    assert client.post("/api/v1/outbox/987654/retry", headers=admin_h).status_code == 404


def test_a_refused_message_fails_at_once(app: Any, chat: Sink, smtp: SMTPTestServer) -> None:
    app.config["FLOWGATE_SMTP_URL"] = f"smtp://127.0.0.1:{smtp.port}"
    smtp.recorder.refuse["gone@shop.test"] = "550 No such user"
    chat.default = Answer(status=404)
    mail = queue_email("gone@shop.test")
    hook = outbox.webhook(f"{chat.url}/gone", {"x": 1}, purpose="test")
    db.session.commit()
    assert outbox.deliver_due(app)["failed"] == 2
    assert (row(mail).status, row(mail).attempts) == ("failed", 1)
    assert "550" in row(mail).last_error
    assert (row(hook.id).status, row(hook.id).last_error) == ("failed", "webhook answered HTTP 404")


def test_secrets_never_reach_last_error_the_api_or_the_logs(
    app: Any, client: Any, make_user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens: the HTTP library's error quotes the request path
    url = f"http://127.0.0.1:{port}{SECRET_PATH}?{SECRET_QUERY}"
    message = outbox.webhook(url, {"event": "alert.opened"}, purpose="alert.opened")
    app.config["FLOWGATE_SMTP_URL"] = f"smtp://relay-user:Pa55-w0rd-smtp@127.0.0.1:{free_port()}"
    mail = queue_email()
    stored = row(message.id)
    assert SECRET_PATH not in stored.target_encrypted and "s3cret" not in stored.recipient
    with caplog.at_level("INFO"):
        assert outbox.deliver_due(app)["retrying"] == 2
    errors = [row(message.id).last_error, row(mail).last_error]
    assert all(errors) and "127.0.0.1" in errors[0]  # still says where it failed
    _, admin_h = make_user("admin")
    listed = client.get("/api/v1/outbox", headers=admin_h).get_data(as_text=True)
    for secret in ("s3cretPathToken", "q-s3cret-9f8e7d", "T0001", "Pa55-w0rd-smtp"):
        assert all(secret not in e for e in errors), (secret, errors)
        assert secret not in listed and secret not in caplog.text


def test_redact_cuts_paths_queries_and_passwords() -> None:
    url = f"https://hooks.chat.test{SECRET_PATH}?{SECRET_QUERY}"
    message = f"POST {url} failed; url: {SECRET_PATH}?{SECRET_QUERY} (q-s3cret-9f8e7d)"
    assert notify.redact(message, url) == "POST … failed; url: … (…)"
    assert notify.redact("see https://other.test/p/a/t/h?k=v", None) == "see https://other.test/…"
    assert "hunter22" not in notify.redact("535 hunter22", "smtp://u:hunter22@h:25")


def test_review_decisions_never_wait_for_a_hanging_smtp_server(
    app: Any, client: Any, make_user: Any, sink: Any, hanging_smtp: int, monkeypatch: Any
) -> None:
    ctx = review_setup(client, make_user, sink)
    app.config["FLOWGATE_SMTP_URL"] = f"smtp://127.0.0.1:{hanging_smtp}"
    app.config["FLOWGATE_NOTIFY_WEBHOOK_URL"] = f"{sink.url}/governance"
    started = time.monotonic()
    r = client.post(
        f"{ctx['base']}/submit", json={"contract": complete_contract()}, headers=ctx["analyst_h"]
    )
    submit_seconds = time.monotonic() - started
    assert r.status_code == 200
    started = time.monotonic()
    r = client.post(f"{ctx['base']}/approve", json={"comment": "ok"}, headers=ctx["owner_h"])
    approve_seconds = time.monotonic() - started
    assert r.status_code == 200
    # Sending in the request would hold it for SMTP's 10 s timeout; queued, it answers in
    # the time the action itself takes (measured: 0.1-1.5 s, the approval's dry run first).
    limit = notify.SMTP_TIMEOUT_SECONDS / 2
    assert submit_seconds < limit and approve_seconds < limit, (submit_seconds, approve_seconds)
    queued = list(db.session.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars())
    assert [(m.channel, m.purpose, m.status, m.attempts) for m in queued] == [
        ("email", "review.submitted", "pending", 0),
        ("webhook", "review.submitted", "pending", 0),
        ("email", "review.approved", "pending", 0),
        ("webhook", "review.approved", "pending", 0),
    ]
    version_id = queued[0].flow_version_id
    assert version_id is not None and {m.flow_version_id for m in queued} == {version_id}
    assert [r.path for r in sink.requests if r.path == "/governance"] == []

    # The scheduler's tick pays one SMTP timeout for the hanging server, not one per e-mail:
    # the second e-mail waits with the first without spending an attempt.
    monkeypatch.setattr(notify, "SMTP_TIMEOUT_SECONDS", 1)
    started = time.monotonic()
    counts = outbox.tick(app)
    elapsed = time.monotonic() - started
    assert counts == {"sent": 2, "retrying": 1, "failed": 0, "deferred": 1}, counts
    assert elapsed < 1.9, elapsed
    db.session.expire_all()
    emails = [m for m in queued if m.channel == "email"]
    assert [(m.status, m.attempts) for m in emails] == [("pending", 1), ("pending", 0)]
    assert emails[1].next_attempt_at == emails[0].next_attempt_at
    assert "timed out" in emails[0].last_error and emails[1].last_error is None
    assert [r.json()["event"] for r in sink.requests if r.path == "/governance"] == [
        "review.submitted",
        "review.approved",
    ]


def test_an_alert_email_lost_to_an_smtp_blip_is_retried_and_the_alert_shows_it(
    app: Any, client: Any, make_user: Any, sink: Any, smtp: SMTPTestServer, chat: Sink, run_worker
) -> None:
    ctx = alert_flow(app, client, make_user, sink, smtp, chat)
    relay = app.config["FLOWGATE_SMTP_URL"]
    app.config["FLOWGATE_SMTP_URL"] = f"smtp://127.0.0.1:{free_port()}"  # the relay blips
    fail_orders(client, ctx, sink, run_worker)
    assert alerts.evaluate(app)["opened"] >= 1
    [email] = [
        n for n in db.session.execute(select(AlertNotification)).scalars() if n.channel == "email"
    ]
    url = f"/api/v1/alerts/{email.alert_id}"
    shown = {
        n["channel"]: n for n in client.get(url, headers=ctx["headers"]).get_json()["notifications"]
    }
    assert shown["email"]["status"] == "pending" and shown["email"]["ok"] is False
    assert shown["email"]["attempts"] == 1 and shown["email"]["error"]
    assert shown["email"]["next_attempt_at"] is not None
    assert shown["webhook"]["status"] == "sent" and shown["webhook"]["ok"] is True  # at once
    assert shown["in_app"]["status"] == "sent"

    app.config["FLOWGATE_SMTP_URL"] = relay  # back
    assert outbox.tick(app) == {"sent": 0, "retrying": 0, "failed": 0, "deferred": 0}  # not due
    assert outbox.deliver_due(app, now=utcnow() + timedelta(minutes=1))["sent"] == 1
    [mail] = smtp.messages
    assert mail.rcpt_tos == ["tech.owner@example.test"]
    assert mail.message["Subject"].startswith("[Flowgate] Alert")
    shown = {
        n["channel"]: n for n in client.get(url, headers=ctx["headers"]).get_json()["notifications"]
    }
    assert (shown["email"]["status"], shown["email"]["ok"], shown["email"]["attempts"]) == (
        "sent",
        True,
        2,
    )
    assert shown["email"]["delivered_at"] is not None


def test_prune_keeps_what_is_not_sent(app: Any, chat: Sink) -> None:
    sent = outbox.webhook(chat.url, {"n": 1}, purpose="test")
    failing = outbox.webhook(f"http://127.0.0.1:{free_port()}/x", {"n": 2}, purpose="test")
    db.session.commit()
    outbox.deliver_due(app)
    assert (row(sent.id).status, row(failing.id).status) == ("sent", "pending")
    assert outbox.prune(utcnow() - timedelta(days=1)) == 0
    assert outbox.prune(utcnow() + timedelta(seconds=1)) == 1
    db.session.commit()
    assert [m.id for m in db.session.execute(select(OutboxMessage)).scalars()] == [failing.id]


def _postgres_only() -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has a single writer; row locks are PostgreSQL's")


def test_two_concurrent_senders_never_send_the_same_row_twice(app: Any, chat: Sink) -> None:
    _postgres_only()
    chat.default = Answer(status=200, delay=0.02)  # sends take time: the passes overlap
    queued = [outbox.webhook(f"{chat.url}/n/{i}", {"n": i}, purpose="test") for i in range(60)]
    db.session.commit()
    ids = [m.id for m in queued]
    start = threading.Barrier(2)
    counts: list[dict[str, int]] = []

    def sender() -> None:
        with app.app_context():
            start.wait()
            mine = {"sent": 0}
            while True:
                done = outbox.deliver_due(app, limit=5)
                if not any(done.values()):
                    break
                mine["sent"] += done["sent"]
            counts.append(mine)
            db.session.remove()

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(r.json()["n"] for r in chat.requests) == list(range(60))  # once each
    assert sum(c["sent"] for c in counts) == 60 and all(c["sent"] > 0 for c in counts), counts
    db.session.expire_all()
    rows = db.session.execute(select(OutboxMessage).where(OutboxMessage.id.in_(ids))).scalars()
    assert {(m.status, m.attempts) for m in rows} == {("sent", 1)}


def test_a_sender_skips_rows_another_sender_holds(app: Any, chat: Sink) -> None:
    _postgres_only()
    held = outbox.webhook(f"{chat.url}/held", {"n": 0}, purpose="test")
    free = outbox.webhook(f"{chat.url}/free", {"n": 1}, purpose="test")
    db.session.commit()
    other = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    try:
        with other.connect() as conn:
            conn.execute(
                text("SELECT id FROM notification_outbox WHERE id = :id FOR UPDATE"),
                {"id": held.id},
            )
            result: list[dict[str, int]] = []
            worker = threading.Thread(target=lambda: _deliver_in_context(app, result), daemon=True)
            worker.start()
            worker.join(timeout=10)
            assert not worker.is_alive(), "the sender waited for the lock instead of skipping"
            conn.rollback()
    finally:
        other.dispose()
    assert result == [{"sent": 1, "retrying": 0, "failed": 0, "deferred": 0}]
    assert [r.path for r in chat.requests] == ["/free"]
    assert (row(held.id).status, row(held.id).attempts) == ("pending", 0)
    assert row(free.id).status == "sent"


def _deliver_in_context(app: Any, result: list[dict[str, int]]) -> None:
    with app.app_context():
        result.append(outbox.deliver_due(app))
        db.session.remove()


def test_retention_deletes_old_sent_notifications_and_keeps_failed_ones(
    app: Any, chat: Sink
) -> None:
    from app.services import retention

    outbox.webhook(chat.url, {"n": 1}, purpose="test")
    failing = outbox.webhook(f"http://127.0.0.1:{free_port()}/x", {"n": 2}, purpose="test")
    db.session.commit()
    outbox.deliver_due(app)
    assert retention.prune(1).notifications == 0  # sent just now: within the 1-day window
    report = retention.prune(1, now=utcnow() + timedelta(days=2))
    assert report.notifications == 1
    db.session.expire_all()
    assert [m.id for m in db.session.execute(select(OutboxMessage)).scalars()] == [failing.id]
