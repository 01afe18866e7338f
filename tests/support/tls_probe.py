"""A TLS listener for connector tests: records the SNI name each client asked for."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path


class TlsProbe:
    """A TLS listener on 127.0.0.1 that records the SNI name each client asked for."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.names: list[str | None] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.sni_callback = lambda _sock, name, _ctx: self.names.append(name)
        self._context = context
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(5)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve_one, daemon=True)
        self._thread.start()

    def _serve_one(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        with conn:
            try:
                self._context.wrap_socket(conn, server_side=True).close()
            except (ssl.SSLError, OSError):
                pass  # the client rejects our self-signed certificate: expected

    def close(self) -> None:
        self._listener.close()
        self._thread.join(5)
