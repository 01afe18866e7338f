"""TCP connections for non-HTTP connectors (SFTP, SMTP), always through the egress policy.

The HTTP session checks addresses inside its own connections; protocols with their own client
libraries get the same guarantee by connecting here first and handing the library the socket:
the host is resolved once, every address is checked, and the socket goes to a checked address.
"""

from __future__ import annotations

import socket
from typing import Any

from connectors.base import ConnectorContext, ConnectorError, RetryableConnectorError
from connectors.egress import checked_addresses


def egress_policy(ctx: ConnectorContext) -> Any:
    """The context's egress policy; without one no connection may be opened at all."""
    if ctx.egress is None:
        raise ConnectorError(
            "no egress policy: refusing to open a network connection without one "
            "(the worker or API must pass the installation's policy)"
        )
    return ctx.egress


def open_checked_socket(
    ctx: ConnectorContext, host: str, port: int, timeout: float
) -> socket.socket:
    """A connected TCP socket to an address of ``host`` that the egress policy allows.

    Raises ``EgressDenied`` (permanent) before any packet is sent if an address is refused,
    and ``RetryableConnectorError`` if no address accepts the connection in ``timeout``.
    """
    addresses = checked_addresses(egress_policy(ctx), host, port)
    error: OSError = OSError(f"{host} resolved to no address")
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout=timeout)
        except OSError as exc:
            error = exc
    raise connect_error(host, port, error, timeout)


def connect_error(host: str, port: int, exc: BaseException, timeout: float) -> ConnectorError:
    """A refused, reset or timed-out connection: transient, the engine may retry."""
    if isinstance(exc, TimeoutError):
        return RetryableConnectorError(f"could not connect to {host}:{port} within {timeout:g} s")
    return RetryableConnectorError(f"could not connect to {host}:{port}: {os_reason(exc)}")


def os_reason(exc: BaseException) -> str:
    """The readable part of an OSError (``Connection refused``), else the text or type."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
