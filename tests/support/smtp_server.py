"""A real SMTP server on 127.0.0.1 for connector tests (aiosmtpd in a background thread).

It records every accepted message, can refuse recipients or data with scripted replies, and
optionally offers STARTTLS, implicit TLS and AUTH (PLAIN/LOGIN with one user).
"""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    authenticated_as: str | None

    @property
    def message(self) -> email.message.EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed


@dataclass
class Recorder:
    """The handler: records messages; ``refuse`` maps an address to a RCPT reply."""

    messages: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    sessions: int = 0

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: Any
    ) -> Any:
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        login = session.auth_data.login.decode() if session.authenticated else None
        content = envelope.original_content or b""
        self.messages.append(
            Received(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(content), login)
        )
        return "250 Message accepted for delivery"


class _Authenticator:
    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username.encode(), password.encode()
        self.attempts = 0

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        self.attempts += 1
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            self.username,
            self.password,
        )
        # handled=False: let the server answer 535 itself on failure.
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


class _LoopbackController(Controller):
    """A Controller on a socket bound before start, so the port is known without races."""

    def __init__(self, handler: Recorder, **kwargs: Any) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        port = self._sock.getsockname()[1]
        super().__init__(
            handler, hostname="127.0.0.1", port=port, server_hostname="smtp.test", **kwargs
        )

    def _create_server(self) -> Awaitable[Any]:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


class SMTPTestServer:
    """``start()``/``stop()`` a recording SMTP server; see the module docstring."""

    def __init__(
        self,
        *,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        login: tuple[str, str] | None = None,
    ) -> None:
        self.recorder = Recorder()
        self.authenticator = _Authenticator(*login) if login else None
        kwargs: dict[str, Any] = {"ready_timeout": 5.0}
        if starttls is not None:
            kwargs["tls_context"] = starttls
        if implicit_tls is not None:
            kwargs["ssl_context"] = implicit_tls
        if self.authenticator is not None:
            kwargs["authenticator"] = self.authenticator
            kwargs["auth_require_tls"] = True
        self._controller = _LoopbackController(self.recorder, **kwargs)
        self.port: int = self._controller.port

    @property
    def messages(self) -> list[Received]:
        return self.recorder.messages

    def start(self) -> SMTPTestServer:
        self._controller.start()
        self.recorder.sessions = 0  # the controller's own start-up probe is not a client
        return self

    def stop(self) -> None:
        self._controller.stop()
