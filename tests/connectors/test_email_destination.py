"""EmailDestination against a real SMTP server on 127.0.0.1 (aiosmtpd, tests/support)."""

from __future__ import annotations

import logging
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from connectors.base import ConnectorContext, ConnectorError, RetryableConnectorError
from connectors.config import config_problems
from connectors.egress import EgressDenied, EgressPolicy
from connectors.smtp_email import SPEC, EmailDestination, message_id, render
from tests.support.smtp_server import SMTPTestServer

# "localhost" may resolve to ::1 as well; the connector refuses a name if ANY answer is denied.
LOOPBACK = EgressPolicy.from_cidrs(["127.0.0.0/8", "::1/128"])
KEY = "fg-run-41-notify"
PASSWORD = "pw-CANARY-3f2a1b0c"
ORDER = {
    "order": {"number": 1042, "total": 99.5, "items": [{"sku": "TEE-M"}, {"sku": "CAP"}]},
    "customer": {"name": "Zoë Ünlü", "email": "zoe@customer.example"},
}
STEP = {
    "to": ["${customer.email}"],
    "subject": "Order ${order.number} confirmed",
    "body": "Hello ${customer.name},\nfirst item ${order.items.0.sku}, total $$${order.total}.",
}


def make_ctx(
    connection: dict[str, Any],
    step: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    egress: Any = LOOPBACK,
) -> ConnectorContext:
    return ConnectorContext(
        connection_config=connection,
        secrets=secrets or {},
        step_config=STEP if step is None else step,
        logger=logging.getLogger("tests.connectors.email"),
        http=None,
        egress=egress,
    )


def plain(server: SMTPTestServer, **overrides: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": server.port,
        "security": "none",
        "from_address": "orders@shop.example",
        "helo_name": "flowgate.test",
        "timeout_seconds": 3,
        **overrides,
    }


def send(ctx: ConnectorContext, message: Any = None, key: str = KEY) -> Any:
    return EmailDestination().send(ctx, ORDER if message is None else message, idempotency_key=key)


@pytest.fixture(scope="module")
def tls_contexts(tls_files: tuple[Path, Path]) -> tuple[ssl.SSLContext, str]:
    """The server side of the conftest's ``localhost`` certificate, and its PEM for clients."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    return context, tls_files[0].read_text()


@pytest.fixture
def secure_smtp(tls_contexts: tuple[ssl.SSLContext, str]) -> Iterator[SMTPTestServer]:
    """STARTTLS and AUTH (only after TLS) for user 'shop'."""
    server = SMTPTestServer(starttls=tls_contexts[0], login=("shop", PASSWORD)).start()
    yield server
    server.stop()


def secure(server: SMTPTestServer, ca_pem: str, **overrides: Any) -> dict[str, Any]:
    return plain(
        server,
        host="localhost",
        security="starttls",
        username="shop",
        ca_certificate=ca_pem,
        **overrides,
    )


# --- delivery ---


def test_delivers_templated_email_with_a_message_id_from_the_key(smtp: SMTPTestServer) -> None:
    step = {**STEP, "reply_to": "support+${order.number}@shop.example"}
    ctx = make_ctx(plain(smtp, from_name="Shop Orders"), step)

    result = send(ctx)

    [received] = smtp.messages
    email = received.message
    assert received.mail_from == "orders@shop.example"
    assert received.rcpt_tos == ["zoe@customer.example"]
    assert email["Subject"] == "Order 1042 confirmed"
    assert email["From"] == "Shop Orders <orders@shop.example>"
    assert email["To"] == "zoe@customer.example"
    assert email["Reply-To"] == "support+1042@shop.example"
    assert email["Message-ID"] == message_id(KEY, "orders@shop.example")
    assert email["Date"]
    body = "Hello Zoë Ünlü,\r\nfirst item TEE-M, total $99.5.\r\n"  # CRLF on the wire
    assert email.get_content() == body
    assert result.response_excerpt.endswith(email["Message-ID"])


def test_message_id_is_stable_per_key_and_distinct_across_keys(smtp: SMTPTestServer) -> None:
    ctx = make_ctx(plain(smtp))
    send(ctx)
    send(ctx)
    send(ctx, key="fg-run-42-notify")
    ids = [m.message["Message-ID"] for m in smtp.messages]
    assert ids[0] == ids[1] != ids[2]
    assert ids[0].startswith("<") and ids[0].endswith(".flowgate@shop.example>")


def test_recipients_from_lists_commas_and_literals(smtp: SMTPTestServer) -> None:
    step = {**STEP, "to": ["${team}", "a@shop.example, b@shop.example", "A@shop.example"]}
    message = {**ORDER, "team": ["ops@shop.example", "a@shop.example"]}
    send(make_ctx(plain(smtp), step), message)
    [received] = smtp.messages
    assert received.rcpt_tos == [
        "ops@shop.example",
        "a@shop.example",
        "b@shop.example",
        "A@shop.example",
    ]


def test_utf8_subject_is_encoded_and_round_trips(smtp: SMTPTestServer) -> None:
    step = {**STEP, "subject": "Bestellung für ${customer.name} – ${order.items}"}
    send(make_ctx(plain(smtp), step))
    raw_headers = smtp.messages[0].data.split(b"\r\n\r\n", 1)[0]
    assert raw_headers.isascii()
    subject = smtp.messages[0].message["Subject"]
    assert subject == 'Bestellung für Zoë Ünlü – [{"sku": "TEE-M"}, {"sku": "CAP"}]'


# --- refused before anything is sent ---


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("subject", "Order ${order.number}", {"order": {"number": "1\r\nBcc: victim@x.example"}}),
        ("subject", "Hi ${name}", {"name": "a\nb"}),
        ("subject", "Hi ${name}", {"name": "a\u2028b"}),
        ("to", ["${email}"], {"email": "a@x.example\r\nBcc: victim@x.example"}),
        ("reply_to", "${email}", {"email": "a@x.example\nBcc: victim@x.example"}),
    ],
)
def test_line_breaks_in_headers_are_refused_and_nothing_is_sent(
    smtp: SMTPTestServer, connect_log: list[Any], field: str, value: Any, message: Any
) -> None:
    before = len(connect_log)
    step = {**STEP, "to": ["ops@shop.example"], field: value}
    with pytest.raises(ConnectorError, match="line break") as info:
        send(make_ctx(plain(smtp), step), message)
    assert not info.value.retryable
    assert len(connect_log) == before  # refused before connecting
    assert smtp.messages == [] and smtp.recorder.sessions == 0


@pytest.mark.parametrize(
    ("step", "message", "match"),
    [
        ({**STEP, "to": ["${customer.email}"]}, {"customer": {}}, r"\$\{customer.email\} is not"),
        ({**STEP, "body": "${order.items.7.sku}"}, ORDER, r"\$\{order.items.7.sku\} is not"),
        ({**STEP, "to": ["not-an-address"]}, ORDER, "not a plain email address"),
        ({**STEP, "to": ["Zoë <zoe@x.example>"]}, ORDER, "not a plain email address"),
        ({**STEP, "reply_to": "${customer.name}"}, ORDER, "not a plain email address"),
        ({**STEP, "subject": "${unclosed"}, ORDER, "malformed"),
        ({**STEP, "to": ["${list}"]}, {"list": []}, "no recipient"),
        ({**STEP, "to": ["${list}"]}, {"list": [f"u{i}@x.example" for i in range(51)]}, "at most"),
        ({"to": ["a@x.example"]}, ORDER, "subject and a body"),
    ],
)
def test_bad_templates_or_addresses_are_permanent_and_nothing_is_sent(
    smtp: SMTPTestServer, step: dict[str, Any], message: Any, match: str
) -> None:
    with pytest.raises(ConnectorError, match=match) as info:
        send(make_ctx(plain(smtp), step), message)
    assert not info.value.retryable
    assert smtp.messages == [] and smtp.recorder.sessions == 0


def test_render_is_a_tiny_safe_formatter() -> None:
    message = {"a": {"b": [10, {"c": None}]}, "t": True, "__class__": "x"}
    assert render("${a.b.0}|${a.b.1.c}|${t}|$$|$5|${__class__}", message, "x") == "10||true|$|$5|x"
    # No attribute access, format specs or indexing syntax: only keys of the message itself.
    assert render("{a} {0} {a.__class__}", message, "x") == "{a} {0} {a.__class__}"
    for template in ("${a.__class__}", "${a.b.9}", "${a[0]}", "${a!r}", "${a:>10}"):
        with pytest.raises(ConnectorError):
            render(template, message, "x")


# --- server answers ---


def test_550_for_every_recipient_is_permanent(smtp: SMTPTestServer) -> None:
    smtp.recorder.refuse["zoe@customer.example"] = "550 5.1.1 No such user"
    with pytest.raises(ConnectorError, match="550 5.1.1 No such user") as info:
        send(make_ctx(plain(smtp)))
    assert not info.value.retryable
    assert smtp.messages == []


def test_451_is_retryable(smtp: SMTPTestServer) -> None:
    smtp.recorder.data_reply = "451 4.3.0 Try again later"
    with pytest.raises(RetryableConnectorError, match="DATA with 451 4.3.0 Try again later"):
        send(make_ctx(plain(smtp)))


def test_temporary_recipient_refusal_is_retryable(smtp: SMTPTestServer) -> None:
    smtp.recorder.refuse["zoe@customer.example"] = "450 4.2.1 Mailbox busy"
    with pytest.raises(RetryableConnectorError, match="450"):
        send(make_ctx(plain(smtp)))


def test_partial_refusal_is_permanent_and_says_who_got_it(smtp: SMTPTestServer) -> None:
    smtp.recorder.refuse["gone@shop.example"] = "550 5.1.1 Gone"
    step = {**STEP, "to": ["${customer.email}", "gone@shop.example"]}
    with pytest.raises(ConnectorError, match=r"sent to 1 of 2 .*gone@shop.example \(550") as info:
        send(make_ctx(plain(smtp), step))
    assert not info.value.retryable  # a retry would mail the customer twice
    assert smtp.messages[0].rcpt_tos == ["zoe@customer.example"]


def test_closed_port_is_retryable(closed_port: int) -> None:
    config = {"host": "127.0.0.1", "port": closed_port, "security": "none"}
    ctx = make_ctx({**config, "from_address": "o@shop.example"})
    with pytest.raises(RetryableConnectorError, match="Connection refused"):
        send(ctx)
    result = EmailDestination().check(ctx)
    assert not result.ok and "Connection refused" in result.message


def test_silent_server_times_out_as_retryable() -> None:
    with socket.socket() as listener:  # accepts (backlog) but never greets
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        config = {"host": "127.0.0.1", "port": listener.getsockname()[1], "security": "none"}
        ctx = make_ctx({**config, "from_address": "o@shop.example", "timeout_seconds": 0.3})
        started = time.monotonic()
        with pytest.raises(RetryableConnectorError, match="within 0.3 s"):
            send(ctx)
        assert time.monotonic() - started < 2


# --- TLS and login ---


def test_starttls_and_login_deliver(
    secure_smtp: SMTPTestServer, tls_contexts: tuple[ssl.SSLContext, str]
) -> None:
    ctx = make_ctx(secure(secure_smtp, tls_contexts[1]), secrets={"password": PASSWORD})
    send(ctx)
    [received] = secure_smtp.messages
    assert received.authenticated_as == "shop"
    check = EmailDestination().check(ctx)
    assert check.ok, check.message
    assert "answered EHLO and NOOP" in check.message and "logged in as shop" in check.message


def test_wrong_password_is_permanent_and_the_secret_never_leaks(
    secure_smtp: SMTPTestServer,
    tls_contexts: tuple[ssl.SSLContext, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-CANARY-9e8d7c6b"
    ctx = make_ctx(secure(secure_smtp, tls_contexts[1]), secrets={"password": wrong})
    with pytest.raises(ConnectorError, match="username or password was refused") as info:
        send(ctx)
    assert not info.value.retryable
    check = EmailDestination().check(ctx)
    assert not check.ok and "535" in check.message
    texts = [str(info.value), info.value.response_excerpt, check.message, caplog.text]
    texts += [r.getMessage() for r in caplog.records]
    assert not any(wrong in text for text in texts)
    assert secure_smtp.messages == []


def test_untrusted_certificate_is_permanent_and_no_password_is_sent(
    secure_smtp: SMTPTestServer, tls_contexts: tuple[ssl.SSLContext, str]
) -> None:
    config = secure(secure_smtp, tls_contexts[1])
    del config["ca_certificate"]
    with pytest.raises(ConnectorError, match="certificate of localhost not trusted") as info:
        send(make_ctx(config, secrets={"password": PASSWORD}))
    assert not info.value.retryable
    assert secure_smtp.authenticator is not None and secure_smtp.authenticator.attempts == 0


def test_missing_starttls_is_refused_not_skipped(smtp: SMTPTestServer) -> None:
    config = plain(smtp, security="starttls", username="shop")
    with pytest.raises(ConnectorError, match="does not offer STARTTLS") as info:
        send(make_ctx(config, secrets={"password": PASSWORD}))
    assert not info.value.retryable
    assert smtp.messages == []


def test_implicit_tls_delivers(tls_contexts: tuple[ssl.SSLContext, str]) -> None:
    server = SMTPTestServer(implicit_tls=tls_contexts[0]).start()
    try:
        config = plain(server, host="localhost", security="tls", ca_certificate=tls_contexts[1])
        send(make_ctx(config))
        assert EmailDestination().check(make_ctx(config)).ok
    finally:
        server.stop()
    assert len(server.messages) == 1


def test_login_without_encryption_is_refused(smtp: SMTPTestServer) -> None:
    config = plain(smtp, username="shop")
    with pytest.raises(ConnectorError, match="unencrypted"):
        send(make_ctx(config, secrets={"password": PASSWORD}))
    assert smtp.recorder.sessions == 0
    problems = config_problems(SPEC.connection_schema, config)
    assert [p for p, _ in problems] == ["/username"]


# --- egress ---


def test_egress_refusal_sends_no_packet(smtp: SMTPTestServer, connect_log: list[Any]) -> None:
    before = len(connect_log)
    ctx = make_ctx(plain(smtp), egress=EgressPolicy())
    with pytest.raises(EgressDenied) as info:
        send(ctx)
    assert not info.value.retryable
    result = EmailDestination().check(ctx)
    assert not result.ok and "FLOWGATE_EGRESS_ALLOW" in result.message
    assert len(connect_log) == before
    assert smtp.recorder.sessions == 0


def test_no_egress_policy_is_refused(smtp: SMTPTestServer, connect_log: list[Any]) -> None:
    before = len(connect_log)
    with pytest.raises(ConnectorError, match="no egress policy"):
        send(make_ctx(plain(smtp), egress=None))
    assert len(connect_log) == before


# --- check() ---


def test_check_reports_success_on_a_plain_relay(smtp: SMTPTestServer) -> None:
    result = EmailDestination().check(make_ctx(plain(smtp), step={}))
    assert result.ok
    assert result.message.startswith("127.0.0.1 answered EHLO and NOOP in ")
    assert result.message.endswith("(security none)")


# --- the spec ---


def test_spec_schemas_are_valid_and_describe_every_field() -> None:
    for schema in (SPEC.connection_schema, SPEC.step_schema):
        Draft202012Validator.check_schema(schema)
        assert schema["additionalProperties"] is False
        for name, prop in schema["properties"].items():
            assert prop.get("title") and prop.get("description"), name
    assert SPEC.secret_fields == ("password",)
    assert (SPEC.key, SPEC.kind, SPEC.idempotency) == ("email", "destination", "none")


def test_schema_problems_point_at_the_field() -> None:
    good = {"host": "smtp.example.com", "from_address": "orders@shop.example", "username": "u"}
    assert config_problems(SPEC.connection_schema, good) == []
    bad = {"host": "smtp.example.com", "from_address": "Shop <o@x.example>", "security": "ssl"}
    assert [p for p, _ in config_problems(SPEC.connection_schema, bad)] == [
        "/from_address",
        "/security",
    ]
    assert config_problems(SPEC.step_schema, STEP) == []
    step_problems = config_problems(
        SPEC.step_schema,
        {"to": [], "subject": "Hi\r\nBcc: x@y.example", "body": "${broken", "cc": ["x"]},
    )
    assert [p for p, _ in step_problems] == ["/body", "/cc", "/subject", "/to"]


def test_module_imports_no_test_server_and_no_web_layer() -> None:
    code = (
        "import sys, connectors.smtp_email\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('aiosmtpd', 'flows', 'app')]\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
