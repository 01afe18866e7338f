"""Email destination: one plain-text email per message over SMTP, with templated fields.

(The module is not called ``email``: that would shadow the standard library package that
smtplib and requests import.)

Templates use ``${field.path}`` placeholders over the mapped message (``${order.id}``,
``${items.0.sku}``; ``$$`` is a literal ``$``) and nothing else: no expressions, attribute
access or format specs, so a template cannot reach beyond the message. A placeholder that is
missing from the message is an error (a null becomes empty text); objects and arrays are
written as JSON. A ``to`` entry that is exactly one placeholder may name an array of
addresses; any ``to`` entry may hold several addresses separated by commas.

Header values (subject, recipients, reply-to) are refused with a permanent error when they
contain a line break or control character after templating: nothing is sent. Addresses are
plain ``local@domain`` in ASCII (no display names, no SMTPUTF8).

There is no idempotency at the SMTP level ("none"), but the ``Message-ID`` is derived from
the delivery's idempotency key, so a retried delivery carries the same ID and receiving
systems that deduplicate on it see one message.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate
from typing import Any

from connectors.base import (
    CheckResult,
    ConnectorContext,
    ConnectorError,
    ConnectorSpec,
    Destination,
    RetryableConnectorError,
    SendResult,
)
from connectors.redaction import Redactor
from connectors.tcp import open_checked_socket, os_reason

_DEFAULT_TIMEOUT_SECONDS = 10.0
_DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}
_MAX_RECIPIENTS = 50
_REPLY_CHARS = 200
_PATH = r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*"
_TOKEN = re.compile(r"\$\$|\$\{(" + _PATH + r")\}")
# Text with well-formed placeholders only; a "$" not starting one stays a "$".
TEMPLATE_PATTERN = r"^(?:[^$]|\$\$|\$\{" + _PATH + r"\}|\$(?![{$]))*$"
HEADER_TEMPLATE_PATTERN = r"^(?:[^$\x00-\x1f\x7f]|\$\$|\$\{" + _PATH + r"\}|\$(?![{$]))*$"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ADDRESS_PATTERN = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@" + _LABEL + r"(?:\." + _LABEL + r")+$"
# Line breaks the email package or a receiving server might honour, plus every control
# character: none belongs in a header value.
_HEADER_BREAKERS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_PLACEHOLDER_HELP = "well-formed placeholders only: ${field.path}, and $$ for a literal $"

CONNECTION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "SMTP connection",
    "properties": {
        "host": {
            "type": "string",
            "title": "SMTP host",
            "description": "Name or address of the mail server (relay).",
            "pattern": r"^[A-Za-z0-9.:\[\]-]+$",
            "maxLength": 253,
        },
        "port": {
            "type": "integer",
            "title": "Port",
            "description": "Empty: 587 for starttls, 465 for tls, 25 for none.",
            "minimum": 1,
            "maximum": 65535,
        },
        "security": {
            "type": "string",
            "title": "Security",
            "description": "starttls: upgrade to TLS before anything else (required, never "
            "skipped); tls: TLS from the start (SMTPS); none: no encryption, no login.",
            "enum": ["starttls", "tls", "none"],
            "default": "starttls",
        },
        "username": {
            "type": "string",
            "title": "Username",
            "description": "Login name; the password is stored as a secret. Leave empty for "
            "relays that need no login.",
            "minLength": 1,
            "maxLength": 256,
            "pattern": r"^[^\x00-\x1f\x7f]*$",
        },
        "from_address": {
            "type": "string",
            "title": "From address",
            "description": "Sender address, e.g. orders@shop.example.",
            "pattern": ADDRESS_PATTERN,
            "maxLength": 254,
            "errorMessage": {"pattern": "is not a plain email address (name@domain.tld)"},
        },
        "from_name": {
            "type": "string",
            "title": "From name",
            "description": "Display name shown with the sender address, e.g. 'Shop Orders'.",
            "pattern": r"^[^\x00-\x1f\x7f]*$",
            "maxLength": 128,
            "errorMessage": {"pattern": "cannot contain line breaks or control characters"},
        },
        "helo_name": {
            "type": "string",
            "title": "EHLO name",
            "description": "Name this client announces. Empty: the machine's host name if it "
            "is fully qualified, else its address.",
            "pattern": r"^[A-Za-z0-9.-]+$",
            "maxLength": 253,
        },
        "ca_certificate": {
            "type": "string",
            "title": "Extra CA certificate",
            "description": "PEM certificate of a private CA to trust for this server, in "
            "addition to the system's. Certificates are always verified.",
            "pattern": r"^\s*-----BEGIN CERTIFICATE-----",
            "maxLength": 65536,
            "errorMessage": {"pattern": "must be a PEM certificate (-----BEGIN CERTIFICATE-----)"},
        },
        "timeout_seconds": {
            "type": "number",
            "title": "Timeout (seconds)",
            "description": "Limit for connecting and for each SMTP command.",
            "default": _DEFAULT_TIMEOUT_SECONDS,
            "minimum": 0.1,
            "maximum": 120,
        },
    },
    "required": ["host", "from_address"],
    "additionalProperties": False,
    "allOf": [
        {
            "if": {"properties": {"security": {"const": "none"}}, "required": ["security"]},
            "then": {
                "properties": {
                    "username": {
                        "not": {},
                        "errorMessage": {
                            "not": "cannot be used with security 'none': the password would "
                            "travel unencrypted"
                        },
                    }
                }
            },
        }
    ],
}


def _template(title: str, description: str, *, header: bool, max_length: int) -> dict[str, Any]:
    return {
        "type": "string",
        "title": title,
        "description": description,
        "pattern": HEADER_TEMPLATE_PATTERN if header else TEMPLATE_PATTERN,
        "maxLength": max_length,
        "errorMessage": {
            "pattern": ("no line breaks or control characters; " if header else "")
            + _PLACEHOLDER_HELP
        },
    }


STEP_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "Send an email",
    "properties": {
        "to": {
            "type": "array",
            "title": "To",
            "description": "Recipients: addresses or templates such as ${customer.email}; an "
            "entry may expand to several comma-separated addresses, or be one placeholder "
            f"naming an array. At most {_MAX_RECIPIENTS} recipients.",
            "items": _template("Recipient", "Address or template.", header=True, max_length=512),
            "minItems": 1,
            "maxItems": _MAX_RECIPIENTS,
        },
        "subject": _template(
            "Subject",
            "Template, e.g. 'Order ${order.number} shipped'. ${field.path} reads the message; "
            "$$ is a literal $.",
            header=True,
            max_length=998,
        ),
        "body": _template(
            "Body",
            "Plain-text template with ${field.path} placeholders; objects and arrays are "
            "written as JSON, a missing field is an error.",
            header=False,
            max_length=100_000,
        ),
        "reply_to": _template(
            "Reply-To",
            "Optional address (or template) replies should go to.",
            header=True,
            max_length=512,
        ),
    },
    "required": ["to", "subject", "body"],
    "additionalProperties": False,
}

SPEC = ConnectorSpec(
    key="email",
    name="Email (SMTP)",
    kind="destination",
    version=1,
    description="Send each message as a plain-text email with a templated subject and body, "
    "over SMTP with STARTTLS or TLS.",
    connection_schema=CONNECTION_SCHEMA,
    secret_fields=("password",),
    step_schema=STEP_SCHEMA,
    requires_connection=True,
    idempotency="none",
)


class EmailDestination(Destination):
    """Sends one email per message; see the module docstring for the rules."""

    spec = SPEC

    def send(self, ctx: ConnectorContext, message: Any, *, idempotency_key: str) -> SendResult:
        """Template the email, refuse unsafe headers, then hand it to the SMTP server."""
        config = ctx.connection_config
        sender = _address(config.get("from_address"), "the connection's from_address")
        email, recipients = build_email(config, ctx.step_config, message, idempotency_key)
        started = time.monotonic()
        with _session(ctx) as client:
            refused = client.sendmail(sender, recipients, email.as_bytes())
        if refused:
            raise ConnectorError(
                f"sent to {len(recipients) - len(refused)} of {len(recipients)} recipients; "
                "refused: " + "; ".join(f"{a} ({_reply(*r, ctx)})" for a, r in refused.items())
            )
        ctx.logger.info(
            "connector.email.sent recipients=%d elapsed_ms=%d",
            len(recipients),
            round((time.monotonic() - started) * 1000),
        )
        return SendResult(
            status_code=None,
            response_excerpt=f"accepted for {len(recipients)} recipients, Message-ID "
            f"{email['Message-ID']}",
        )

    def check(self, ctx: ConnectorContext) -> CheckResult:
        """Connect, EHLO, STARTTLS/TLS and login as configured, then NOOP."""
        config = ctx.connection_config
        started = time.monotonic()
        try:
            with _session(ctx) as client:
                code, reply = client.noop()
                if code != 250:
                    raise _smtp_error(code, reply, ctx, "NOOP")
        except ConnectorError as exc:
            return CheckResult(ok=False, message=exc.message)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        security = config.get("security", "starttls")
        login = f", logged in as {config['username']}" if config.get("username") else ""
        return CheckResult(
            ok=True,
            message=f"{config.get('host')} answered EHLO and NOOP in {elapsed_ms} ms "
            f"(security {security}{login})",
        )


# --- templates and the email itself ---


def render(template: str, message: Any, what: str) -> str:
    """Replace ``${field.path}`` with values from ``message`` and ``$$`` with ``$``."""
    if not re.search(TEMPLATE_PATTERN, template):
        raise ConnectorError(f"{what} template has a malformed ${{...}} placeholder")

    def replace(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return "$"
        return _text(lookup(message, match.group(1), what))

    return _TOKEN.sub(replace, template)


def lookup(message: Any, path: str, what: str) -> Any:
    """The value at a dotted path; a number indexes an array."""
    value = message
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise ConnectorError(f"{what}: ${{{path}}} is not in the message")
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _header(template: Any, message: Any, what: str) -> str:
    return _checked_header(render(str(template), message, what), what)


def _checked_header(value: str, what: str) -> str:
    if _HEADER_BREAKERS.search(value):
        raise ConnectorError(
            f"{what} contains a line break or control character after templating; refused so "
            "no header can be injected (nothing was sent)"
        )
    return value.strip()


def _address(value: Any, what: str) -> str:
    if not isinstance(value, str) or not re.search(ADDRESS_PATTERN, value.strip()):
        shown = repr(value)[:80]
        raise ConnectorError(f"{what} {shown} is not a plain email address (name@domain.tld)")
    return value.strip()


def _recipients(entries: Any, message: Any) -> list[str]:
    if not isinstance(entries, list) or not entries:
        raise ConnectorError("the step needs at least one 'to' recipient")
    found: list[str] = []
    for entry in entries:
        whole = re.fullmatch(r"\$\{(" + _PATH + r")\}", str(entry))
        value = lookup(message, whole.group(1), "to") if whole else None
        if isinstance(value, list):  # "${customer.emails}" naming an array of addresses
            pieces = [_checked_header(_text(item), "to") for item in value]
        else:
            pieces = _header(entry, message, "to").split(",")
        found.extend(_address(piece, "recipient") for piece in pieces if piece.strip())
    unique = list(dict.fromkeys(found))
    if not unique:
        raise ConnectorError("the 'to' templates produced no recipient")
    if len(unique) > _MAX_RECIPIENTS:
        raise ConnectorError(f"{len(unique)} recipients; at most {_MAX_RECIPIENTS} are allowed")
    return unique


def message_id(idempotency_key: str, sender: str) -> str:
    """The same ``Message-ID`` for every attempt of one delivery (receivers dedupe on it)."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:40]
    return f"<{digest}.flowgate@{sender.rsplit('@', 1)[1]}>"


def build_email(
    config: Mapping[str, Any], step: Mapping[str, Any], message: Any, idempotency_key: str
) -> tuple[EmailMessage, list[str]]:
    """The email and its recipients; ``ConnectorError`` for anything unsafe or missing."""
    sender = _address(config.get("from_address"), "the connection's from_address")
    if step.get("subject") is None or step.get("body") is None:
        raise ConnectorError("the step needs a subject and a body template")
    recipients = _recipients(step.get("to"), message)
    email = EmailMessage(policy=SMTP_POLICY)
    from_name = str(config.get("from_name") or "")
    if _HEADER_BREAKERS.search(from_name):
        raise ConnectorError("the connection's from_name contains a line break")
    email["From"] = Address(display_name=from_name, addr_spec=sender)
    email["To"] = ", ".join(recipients)
    if step.get("reply_to"):
        email["Reply-To"] = _address(_header(step["reply_to"], message, "reply_to"), "reply_to")
    email["Subject"] = _header(step["subject"], message, "subject")
    email["Date"] = formatdate(usegmt=True)
    email["Message-ID"] = message_id(idempotency_key, sender)
    # quoted-printable: 7-bit safe for servers without 8BITMIME, still readable as text.
    email.set_content(render(str(step["body"]), message, "body"), cte="quoted-printable")
    return email, recipients


# --- the SMTP session ---


class _DataTracking:
    """Remembers that the message content went out (DATA accepted with 354 and the body
    sent): a timeout or dropped connection after that is ambiguous, the server may have
    queued the email."""

    data_sent = False

    def send(self, s: Any) -> None:
        if getattr(self, "_in_data", False) and isinstance(s, bytes):  # the body, not "DATA"
            self.data_sent = True
        super().send(s)  # type: ignore[misc]

    def data(self, msg: Any) -> Any:
        self._in_data = True
        try:
            return super().data(msg)  # type: ignore[misc]
        finally:
            self._in_data = False


class _CheckedSMTP(_DataTracking, smtplib.SMTP):
    """``smtplib.SMTP`` whose socket goes through the egress policy (TLS still checks the
    certificate against the configured host name)."""

    def __init__(self, ctx: ConnectorContext, timeout: float, helo: str) -> None:
        self._ctx = ctx
        super().__init__(local_hostname=helo or "pending", timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return open_checked_socket(self._ctx, host, port, timeout)


class _CheckedSMTPSSL(_DataTracking, smtplib.SMTP_SSL):
    def __init__(
        self, ctx: ConnectorContext, timeout: float, helo: str, context: ssl.SSLContext
    ) -> None:
        self._ctx = ctx
        super().__init__(local_hostname=helo or "pending", timeout=timeout, context=context)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = open_checked_socket(self._ctx, host, port, timeout)
        try:
            return self.context.wrap_socket(sock, server_hostname=self._host)
        except BaseException:
            sock.close()
            raise


@contextlib.contextmanager
def _session(ctx: ConnectorContext) -> Iterator[smtplib.SMTP]:
    """A connected, greeted (and, if configured, encrypted and logged-in) SMTP client."""
    config = ctx.connection_config
    host, port, security = _target(config)
    username = config.get("username") or None
    password = ctx.secrets.get("password") or None
    if username and security == "none":
        raise ConnectorError(
            "login needs security starttls or tls: the password would travel unencrypted"
        )
    if username and not password:
        raise ConnectorError("a username is configured but no password is stored")
    timeout = float(config.get("timeout_seconds", ctx.timeout_seconds))
    helo = str(config.get("helo_name") or "")
    tls = _tls_context(config) if security != "none" else None
    client: smtplib.SMTP
    if security == "tls":
        assert tls is not None
        client = _CheckedSMTPSSL(ctx, timeout, helo, tls)
    else:
        client = _CheckedSMTP(ctx, timeout, helo)
    client._host = host  # smtplib sets it only when the constructor connects; TLS needs it
    try:
        client.connect(host, port)
        if not helo:
            client.local_hostname = _default_helo(client.sock)
        client.ehlo()
        if security == "starttls":
            if not client.has_extn("starttls"):
                raise ConnectorError(f"{host} does not offer STARTTLS; nothing was sent")
            client.starttls(context=tls)
            client.ehlo()
        if username and password:
            client.login(username, password)
        yield client
    except ConnectorError:
        raise
    except (smtplib.SMTPException, OSError) as exc:
        error = _classify(exc, ctx, host, port, timeout)
        if getattr(client, "data_sent", False) and isinstance(error, RetryableConnectorError):
            if not isinstance(exc, smtplib.SMTPResponseException):  # an answer is no mystery
                error = RetryableConnectorError(
                    error.message + " after the message was sent (DATA): it may have been"
                    " delivered",
                    ambiguous=True,
                )
        raise error from None
    finally:
        _close(client)


def _target(config: Mapping[str, Any]) -> tuple[str, int, str]:
    host = config.get("host")
    security = config.get("security", "starttls")
    if not isinstance(host, str) or not host:
        raise ConnectorError("the connection has no SMTP host")
    if security not in _DEFAULT_PORTS:
        raise ConnectorError(f"security {security!r} is not starttls, tls or none")
    port = config.get("port") or _DEFAULT_PORTS[security]
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ConnectorError(f"port {port!r} is not a TCP port")
    return host, port, str(security)


def _tls_context(config: Mapping[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context()
    extra = config.get("ca_certificate")
    if extra:
        try:
            context.load_verify_locations(cadata=str(extra))
        except (ssl.SSLError, ValueError):
            raise ConnectorError("ca_certificate is not a valid PEM certificate") from None
    return context


def _default_helo(sock: Any) -> str:
    name = socket.gethostname()  # no DNS lookup (socket.getfqdn() may block on one)
    if "." in name:
        return name
    address = str(sock.getsockname()[0]) if sock is not None else "127.0.0.1"
    return f"[IPv6:{address}]" if ":" in address else f"[{address}]"


def _close(client: smtplib.SMTP) -> None:
    if client.sock is None:
        return
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def _reply(code: int, reply: bytes | str, ctx: ConnectorContext) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    text = Redactor(ctx.secrets.values())(" ".join(text.split()))
    return f"{code} {text[:_REPLY_CHARS]}".strip()


def _smtp_error(code: int, reply: bytes | str, ctx: ConnectorContext, stage: str) -> ConnectorError:
    """4xx replies are temporary (RFC 5321 4.2.1): retry; 5xx and others are permanent."""
    text = f"SMTP server answered {stage} with {_reply(code, reply, ctx)}"
    if 400 <= code < 500:
        return RetryableConnectorError(text + "; the delivery can be retried")
    if code in (530, 534, 535):
        return ConnectorError(text + ": the username or password was refused")
    return ConnectorError(text)


def _classify(
    exc: BaseException, ctx: ConnectorContext, host: str, port: int, timeout: float
) -> ConnectorError:
    redact = Redactor(ctx.secrets.values())
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = list(exc.recipients.values())
        temporary = any(400 <= code < 500 for code, _ in replies)
        detail = "; ".join(f"{a} ({_reply(*r, ctx)})" for a, r in exc.recipients.items())
        kind = RetryableConnectorError if temporary else ConnectorError
        return kind(f"every recipient was refused: {detail}")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _smtp_error(exc.smtp_code, exc.smtp_error, ctx, _stage(exc))
    if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
        return RetryableConnectorError(f"no answer from {host}:{port} within {timeout:g} s")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return RetryableConnectorError(f"{host}:{port} closed the connection: {redact(str(exc))}")
    if isinstance(exc, smtplib.SMTPException):  # e.g. no common AUTH mechanism
        return ConnectorError(f"SMTP with {host} failed: {redact(str(exc))}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ConnectorError(
            f"TLS certificate of {host} not trusted: {exc.verify_message}; add the CA as "
            "ca_certificate if the server uses a private one"
        )
    if isinstance(exc, ssl.SSLError):
        return ConnectorError(f"TLS handshake with {host} failed: {redact(os_reason(exc))}")
    return RetryableConnectorError(f"connection to {host}:{port} failed: {redact(os_reason(exc))}")


def _stage(exc: smtplib.SMTPResponseException) -> str:
    stages = (
        (smtplib.SMTPAuthenticationError, "the login"),
        (smtplib.SMTPSenderRefused, "MAIL FROM"),
        (smtplib.SMTPDataError, "DATA"),
        (smtplib.SMTPConnectError, "the connection"),
        (smtplib.SMTPHeloError, "EHLO"),
    )
    return next((name for cls, name in stages if isinstance(exc, cls)), "a command")


CONNECTOR = EmailDestination
