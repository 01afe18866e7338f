"""The egress guard: which addresses are refused, and that refusal happens before connect."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from connectors.base import ConnectorError
from connectors.egress import EgressDenied, EgressPolicy, guarded_session

if TYPE_CHECKING:  # fixtures come from conftest.py; pytest imports it, tests never do
    from conftest import FakeDNS, FakeServer

LOOPBACK_POLICY = EgressPolicy.from_cidrs(["127.0.0.0/8"])

REFUSED = [
    "127.0.0.1",
    "127.255.255.254",
    "::1",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "fc00::1",
    "fd00:ec2::254",
    "169.254.169.254",
    "169.254.1.1",
    "fe80::1",
    "fe80::1%1",
    "0.0.0.0",
    "::",
    "224.0.0.1",
    "239.255.255.250",
    "ff02::1",
    "ff0e::1",
    "240.0.0.1",
    "255.255.255.255",
    "100.64.0.1",
    "100.127.255.254",
    "192.0.0.8",
    "192.0.2.1",
    "198.18.0.1",
    "2001:db8::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # deprecated IPv4-compatible form
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b:1::1",  # local-use NAT64
    "2002:7f00:1::1",  # 6to4 wrapping 127.0.0.1
    "2001::1",  # Teredo
    "fec0::1",  # deprecated site-local
    "4000::1",  # outside global unicast
]
# Policy-level only: nothing here is ever connected to.
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED)
def test_default_policy_refuses_non_public_addresses(address: str) -> None:
    policy = EgressPolicy()
    assert not policy.allows(address)
    assert policy.refusal_reason(address)


@pytest.mark.parametrize("address", [*PUBLIC, "64:ff9b::808:808"])
def test_default_policy_allows_public_addresses(address: str) -> None:
    assert EgressPolicy().allows(address)


def test_ipv4_mapped_ipv6_is_judged_as_its_ipv4_address() -> None:
    assert EgressPolicy().refusal_reason("::ffff:127.0.0.1") == "loopback"
    assert LOOPBACK_POLICY.allows("::ffff:127.0.0.1")


def test_refusal_reason_names_the_metadata_service() -> None:
    assert "metadata" in (EgressPolicy().refusal_reason("169.254.169.254") or "")


def test_allowlisted_cidr_allows_only_what_it_covers() -> None:
    policy = EgressPolicy.from_cidrs([" 10.0.0.0/8 ", "", "fd00::/8"])
    assert policy.allows("10.200.0.1")
    assert policy.allows("::ffff:10.200.0.1")
    assert policy.allows("fd00::1")
    assert not policy.allows("192.168.0.1")
    assert not policy.allows("169.254.169.254")


def test_allowlist_string_is_split_like_the_environment_variable() -> None:
    policy = EgressPolicy.from_cidrs("127.0.0.0/8, ::1/128,,")
    assert policy.allowed_networks == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


def test_allowlisted_mapped_network_means_the_ipv4_network() -> None:
    policy = EgressPolicy.from_cidrs(["::ffff:10.0.0.0/104"])
    assert policy.allowed_networks == (ipaddress.ip_network("10.0.0.0/8"),)
    assert policy.allows("10.1.1.1")


@pytest.mark.parametrize(
    ("cidr", "hint"),
    [("10.0.0.0/33", "10.0.0.0/33"), ("intranet", "intranet"), ("10.1.2.3/8", "10.0.0.0/8")],
)
def test_bad_cidr_raises_a_clear_value_error(cidr: str, hint: str) -> None:
    with pytest.raises(ValueError, match="FLOWGATE_EGRESS_ALLOW") as info:
        EgressPolicy.from_cidrs(["127.0.0.0/8", cidr])
    assert hint in str(info.value)


REFUSED_URLS = [
    "http://127.0.0.1:9/",
    "http://[::1]:9/",
    "http://10.0.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "https://192.168.0.1/",
    "http://172.16.5.5:8080/",
    "http://100.64.0.1/",
    "http://0.0.0.0:9/",
    "http://224.0.0.1/",
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/",
    "http://[::ffff:127.0.0.1]:9/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://2130706433:9/",  # 127.0.0.1 in decimal
    "http://0x7f.1:9/",  # 127.0.0.1 in hex shorthand
    "http://017700000001:9/",  # 127.0.0.1 in octal
    "http://good.example@127.0.0.1:9/",
    "http://localhost:9/",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_session_refuses_before_connecting(
    url: str, default_session: requests.Session, connect_log: list[Any]
) -> None:
    with pytest.raises(EgressDenied) as info:
        default_session.get(url, timeout=1, allow_redirects=False)
    assert connect_log == []
    assert "FLOWGATE_EGRESS_ALLOW" in info.value.message


def test_egress_denied_is_a_permanent_connector_error(default_session: requests.Session) -> None:
    with pytest.raises(EgressDenied) as info:
        default_session.post("http://10.0.0.1/", json={}, timeout=1)
    error = info.value
    assert type(error) is EgressDenied  # not wrapped by requests
    assert isinstance(error, ConnectorError)
    assert not error.retryable
    assert (error.address, error.reason) == ("10.0.0.1", "private network")


def test_hostname_is_checked_by_what_it_resolves_to(
    fake_dns: FakeDNS, default_session: requests.Session, connect_log: list[Any]
) -> None:
    fake_dns.set("erp.internal.example", ["10.0.0.5"])
    with pytest.raises(EgressDenied, match=r"erp\.internal\.example"):
        default_session.get("http://erp.internal.example/", timeout=1)
    assert connect_log == []


def test_any_disallowed_answer_refuses_the_host(
    fake_dns: FakeDNS, default_session: requests.Session, connect_log: list[Any]
) -> None:
    # A public first answer must not let the private second one through on a retry.
    fake_dns.set("mixed.example", ["93.184.216.34", "10.0.0.5"])
    with pytest.raises(EgressDenied, match=r"10\.0\.0\.5"):
        default_session.get("http://mixed.example/", timeout=1)
    assert connect_log == []


def test_dns_rebinding_cannot_swap_the_checked_address(
    fake_dns: FakeDNS,
    fake_server: FakeServer,
    loopback_session: requests.Session,
    connect_log: list[Any],
) -> None:
    # First lookup: an allowed address. Second (next connection): an internal one.
    fake_dns.set("rebind.example", ["127.0.0.1"], ["10.0.0.5"])
    url = f"http://rebind.example:{fake_server.port}/"

    assert loopback_session.get(url, timeout=2).status_code == 200
    with pytest.raises(EgressDenied, match=r"10\.0\.0\.5"):
        loopback_session.get(url, timeout=2)

    # One lookup per connection, and the socket went to the address that lookup returned.
    assert fake_dns.lookups == ["rebind.example", "rebind.example"]
    assert connect_log == [("127.0.0.1", fake_server.port)]
    assert len(fake_server.requests) == 1


def test_allowlisted_loopback_is_reachable(
    fake_server: FakeServer, loopback_session: requests.Session
) -> None:
    fake_server.reply(200, "pong")
    response = loopback_session.get(f"http://localhost:{fake_server.port}/ping", timeout=2)
    assert (response.status_code, response.text) == (200, "pong")
    assert fake_server.requests[0].headers["user-agent"] == "Flowgate/0.1"


def test_environment_proxies_are_ignored(
    monkeypatch: pytest.MonkeyPatch, fake_server: FakeServer, loopback_session: requests.Session
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://10.9.9.9:3128")
    monkeypatch.setenv("http_proxy", "http://10.9.9.9:3128")
    loopback_session.get(f"{fake_server.url}/direct", timeout=2)
    assert fake_server.requests[0].path == "/direct"  # origin-form: no proxy in between


def test_explicit_proxies_are_refused(
    fake_server: FakeServer, loopback_session: requests.Session
) -> None:
    with pytest.raises(ConnectorError, match="proxies"):
        loopback_session.get(fake_server.url, proxies={"http": fake_server.url}, timeout=2)
    assert fake_server.requests == []


def test_redirects_are_never_followed(
    fake_server: FakeServer, loopback_session: requests.Session
) -> None:
    fake_server.reply(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    response = loopback_session.get(fake_server.url, timeout=2, allow_redirects=False)
    assert response.status_code == 302
    forgetful = loopback_session.get(fake_server.url, timeout=2)  # allow_redirects defaults True
    assert forgetful.status_code == 302
    assert len(fake_server.requests) == 2


# --- TLS: the socket goes to the checked IP, the certificate is checked against the name ---


def test_tls_is_verified_against_the_hostname(
    tls_files: tuple[Path, Path], tls_server: FakeServer
) -> None:
    with guarded_session(LOOPBACK_POLICY) as session:
        session.verify = str(tls_files[0])
        # Connected to 127.0.0.1 either way; only the name matches the certificate.
        response = session.get(f"https://localhost:{tls_server.port}/", timeout=2)
        assert response.status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            session.get(f"https://127.0.0.1:{tls_server.port}/", timeout=2)
    assert len(tls_server.requests) == 1


def test_tls_target_is_still_egress_checked(connect_log: list[Any]) -> None:
    with guarded_session(EgressPolicy()) as session, pytest.raises(EgressDenied):
        session.get("https://localhost:9/", timeout=1)
    assert connect_log == []
