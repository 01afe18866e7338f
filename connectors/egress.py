"""The one doorway for outbound HTTP: resolve the host, check every address, connect to it.

Checking a URL's host and then letting the HTTP client resolve it again leaves a window for
DNS rebinding, and checks that parse a different string than the client sends have been
bypassed before (n8n GHSA-jp9j-jr97-w9pj). So, like Advocate and Smokescreen, the check lives
inside the connection itself: the socket is opened to exactly the address that was checked,
while TLS still verifies the certificate against the original hostname.

By default only globally routable addresses are allowed; operators may add networks (an
on-prem ERP on 10.0.0.0/8, say) through ``FLOWGATE_EGRESS_ALLOW``, read by the app and passed
to ``EgressPolicy.from_cidrs``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family
from urllib3.util.timeout import Timeout

from connectors import deadline
from connectors.base import ConnectorError, RetryableConnectorError

ALLOW_ENV_VAR = "FLOWGATE_EGRESS_ALLOW"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Special-purpose ranges (IANA registries) that must not be reachable by default. The first
# match names the refusal, so more specific entries come first.
_BLOCKED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(cidr), reason)
    for cidr, reason in (
        ("0.0.0.0/8", "unspecified ('this network')"),
        ("10.0.0.0/8", "private network"),
        ("100.64.0.0/10", "carrier-grade NAT shared space"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.169.254/32", "link-local, cloud metadata service"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private network"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation range"),
        ("192.88.99.0/24", "deprecated 6to4 relay"),
        ("192.168.0.0/16", "private network"),
        ("198.18.0.0/15", "benchmarking range"),
        ("198.51.100.0/24", "documentation range"),
        ("203.0.113.0/24", "documentation range"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    )
)
_BLOCKED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(cidr), reason)
    for cidr, reason in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "deprecated IPv4-compatible"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001:db8::/32", "documentation range"),
        ("2001::/23", "IETF protocol assignments (Teredo, ...)"),
        ("2002::/16", "6to4"),
        ("3fff::/20", "documentation range"),
        ("5f00::/16", "segment routing"),
        ("fc00::/7", "unique local (private network)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "deprecated site-local"),
        ("ff00::/8", "multicast"),
    )
)
# NAT64 translates to the embedded IPv4 address, so that address is what gets judged.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Everything outside global unicast is reserved for now; fail closed on future allocations.
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_MAPPED_V6 = ipaddress.IPv6Network("::ffff:0:0/96")


class EgressDenied(ConnectorError):
    """An outbound connection was refused by the egress policy (permanent: retrying won't help)."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        target = address if host == address else f"{host!r} ({address})"
        super().__init__(
            f"outbound connection to {target} refused ({reason}). An administrator can allow "
            f"it by adding a CIDR such as {address}/{_full_prefix(address)} to {ALLOW_ENV_VAR}."
        )
        self.host = host
        self.address = address
        self.reason = reason


def parse_ip(value: str | IPAddress) -> IPAddress:
    """Parse an address as ``socket.getaddrinfo`` returns it (IPv6 may carry a ``%scope``)."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    return ipaddress.ip_address(value.strip("[]"))


def _full_prefix(address: str) -> int:
    return 32 if parse_ip(address).version == 4 else 128


def _unmapped(addr: IPAddress) -> IPAddress:
    # ::ffff:a.b.c.d is a.b.c.d on a dual-stack socket, so it is judged (and allowed) as such.
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _default_refusal(addr: IPAddress) -> str | None:
    """Why ``addr`` is not publicly routable, or None if it is."""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr in _NAT64:
            embedded = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
            reason = _default_refusal(embedded)
            return f"NAT64 of {embedded}, {reason}" if reason else None
        for network, reason in _BLOCKED_V6:
            if addr in network:
                return reason
        if addr not in _GLOBAL_UNICAST_V6:
            return "reserved"
    else:
        for network4, reason in _BLOCKED_V4:
            if addr in network4:
                return reason
    # Safety net for anything the tables above miss (the stdlib tracks the IANA registry).
    if not addr.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True)
class EgressPolicy:
    """Which addresses outbound connections may reach: public ones plus ``allowed_networks``."""

    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str] | str) -> EgressPolicy:
        """Build a policy from CIDR strings; blank entries are skipped.

        A single string is split on commas and whitespace, as ``FLOWGATE_EGRESS_ALLOW`` is
        written (iterating it character by character would be a silent misconfiguration).
        Raises ``ValueError`` naming the bad entry, e.g. a typo or host bits set.
        """
        if isinstance(cidrs, str):
            cidrs = re.split(r"[,\s]+", cidrs)
        networks: list[IPNetwork] = []
        for raw in cidrs:
            text = raw.strip()
            if text:
                networks.append(_parse_cidr(text))
        return cls(allowed_networks=tuple(networks))

    def refusal_reason(self, ip: str | IPAddress) -> str | None:
        """Why a connection to ``ip`` would be refused, or None if it is allowed."""
        addr = _unmapped(parse_ip(ip))
        if any(addr in net for net in self.allowed_networks if net.version == addr.version):
            return None
        return _default_refusal(addr)

    def allows(self, ip: str | IPAddress) -> bool:
        """True if outbound connections to ``ip`` are permitted."""
        return self.refusal_reason(ip) is None

    def check(self, host: str, ip: str) -> None:
        """Raise ``EgressDenied`` unless ``ip`` (which ``host`` resolved to) is allowed."""
        reason = self.refusal_reason(ip)
        if reason is not None:
            # Drop any %scope so the message can suggest a valid CIDR.
            address = str(_unmapped(parse_ip(ip))).split("%")[0]
            raise EgressDenied(host, address, reason)


def _parse_cidr(text: str) -> IPNetwork:
    try:
        network = ipaddress.ip_network(text)
    except ValueError as exc:
        hint = ""
        with contextlib.suppress(ValueError):  # only "host bits set" has a sensible guess
            hint = f"; did you mean {ipaddress.ip_network(text, strict=False)}?"
        raise ValueError(f"invalid CIDR {text!r} in {ALLOW_ENV_VAR}: {exc}{hint}") from None
    # Match the unmapping done for addresses, so ::ffff:10.0.0.0/104 means 10.0.0.0/8.
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED_V6):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None  # guaranteed by subnet_of above
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def _open_checked_socket(conn: HTTPConnection, policy: EgressPolicy) -> socket.socket:
    """Resolve ``conn``'s host once, refuse if any address is disallowed, connect to it.

    Mirrors ``urllib3.util.connection.create_connection`` (same error types, so requests
    reports timeouts and refusals as usual) but never resolves a second time.
    """
    # _dns_host keeps a trailing dot that matters to DNS; urllib3 strips IPv6 brackets already.
    host = conn._dns_host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, conn.port, allowed_gai_family(), socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    # Refuse if ANY answer is disallowed: a mixed answer is a rebinding attempt or a mistake.
    for *_, sockaddr in infos:
        policy.check(conn.host, str(sockaddr[0]))

    timeout = Timeout.resolve_default_timeout(conn.timeout)
    error: OSError = OSError(f"getaddrinfo returned no addresses for {host}")
    for family, socktype, proto, _canonname, sockaddr in infos:
        sock = None
        try:
            sock = socket.socket(family, socktype, proto)
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(timeout)
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(sockaddr)
        except OSError as exc:
            if sock is not None:
                sock.close()
            error = exc
            continue
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        return sock
    if isinstance(error, TimeoutError):
        raise ConnectTimeoutError(
            conn, f"Connection to {conn.host} timed out. (connect timeout={timeout})"
        ) from error
    raise NewConnectionError(conn, f"Failed to establish a new connection: {error}") from error


class GuardedHTTPConnection(HTTPConnection):
    """An ``http://`` connection that only opens sockets the egress policy allows, and
    tells an attempt's deadline (``connectors.deadline``) which socket to cut."""

    def __init__(self, *args: Any, egress_policy: EgressPolicy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.egress_policy = egress_policy

    def _new_conn(self) -> socket.socket:
        sock = _open_checked_socket(self, self.egress_policy)
        deadline.watching(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline.watching(self)  # a pooled connection being reused: its socket from now
        super().request(*args, **kwargs)


class GuardedHTTPSConnection(HTTPSConnection):
    """An ``https://`` connection: checked socket, certificate verified against the
    hostname; like ``GuardedHTTPConnection`` for deadlines (the TLS handshake included)."""

    def __init__(self, *args: Any, egress_policy: EgressPolicy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.egress_policy = egress_policy

    def _new_conn(self) -> socket.socket:
        # connect() wraps this socket in TLS using self.host (the name), not the address.
        sock = _open_checked_socket(self, self.egress_policy)
        deadline.watching(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline.watching(self)
        super().request(*args, **kwargs)


class _GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class _GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class _GuardedPoolManager(PoolManager):
    """A PoolManager whose pools only build guarded connections bound to one policy."""

    def __init__(self, *args: Any, egress_policy: EgressPolicy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.egress_policy = egress_policy
        self.pool_classes_by_scheme = {
            "http": _GuardedHTTPConnectionPool,
            "https": _GuardedHTTPSConnectionPool,
        }

    def _new_pool(
        self,
        scheme: str,
        host: str,
        port: int,
        request_context: dict[str, Any] | None = None,
    ) -> HTTPConnectionPool:
        # Added here rather than in connection_pool_kw, which urllib3 turns into pool keys.
        context = dict(self.connection_pool_kw if request_context is None else request_context)
        context["egress_policy"] = self.egress_policy
        return super()._new_pool(scheme, host, port, context)


class _GuardedAdapter(HTTPAdapter):
    def __init__(self, policy: EgressPolicy) -> None:
        self._egress_policy = policy  # set first: HTTPAdapter.__init__ builds the pool manager
        super().__init__()

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = _GuardedPoolManager(
            num_pools=connections,
            maxsize=maxsize,
            block=block,
            egress_policy=self._egress_policy,
            **pool_kwargs,
        )

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # A proxy would connect on our behalf, out of reach of the per-connection check.
        raise ConnectorError("HTTP proxies are not supported for outbound connector traffic")


class _NoRedirectSession(requests.Session):
    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        # A followed redirect could carry the body elsewhere; the caller sees the 3xx instead.
        kwargs["allow_redirects"] = False
        return super().send(request, **kwargs)


def guarded_session(policy: EgressPolicy, *, user_agent: str = "Flowgate/0.1") -> requests.Session:
    """A ``requests.Session`` whose every connection passes ``policy``.

    Refusals raise ``EgressDenied`` from the request call itself (requests does not wrap it).
    Environment proxies and ``.netrc`` are ignored, and redirects are never followed, even if
    a caller forgets ``allow_redirects=False``: the 3xx response is returned as is.
    """
    session = _NoRedirectSession()
    session.trust_env = False  # HTTP(S)_PROXY would connect for us, outside the check
    session.headers["User-Agent"] = user_agent
    adapter = _GuardedAdapter(policy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def plain_http_pool(session: Any, url: str) -> PoolManager | None:
    """The guarded urllib3 pool manager behind ``session`` for a plain ``http://`` URL, or
    None when the request must go through ``requests`` (https, whose certificate settings
    are the session's; a session that is not guarded; proxies configured).

    A caller may send through it directly and skip requests' per-request preparation: the
    egress check lives in the pool's connections (``_open_checked_socket``), so it still
    runs on every new connection, exactly as it does under requests.
    """
    if not url.startswith("http://") or not isinstance(session, _NoRedirectSession):
        return None
    if session.proxies or session.trust_env:
        return None
    adapter = session.get_adapter(url)
    if not isinstance(adapter, _GuardedAdapter):
        return None
    return adapter.poolmanager


def checked_addresses(policy: EgressPolicy, host: str, port: int) -> list[str]:
    """Resolve ``host`` once for a non-HTTP protocol (SQL, SFTP, SMTP, AMQP) and return its
    addresses, refusing with ``EgressDenied`` if ANY of them is disallowed.

    Connect to one of the returned addresses (never to ``host`` again), so a DNS answer that
    changes between check and connect cannot slip past the policy.
    """
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, 0, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RetryableConnectorError(f"cannot resolve {host}: {exc.strerror}") from exc
    addresses: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        policy.check(host, address)
        if address not in addresses:
            addresses.append(address)
    return addresses
