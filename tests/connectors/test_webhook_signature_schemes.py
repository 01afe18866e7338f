"""Webhook signature verification: every scheme over the raw body, failing closed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Mapping
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from connectors import webhook
from connectors.base import CheckResult, ConnectorContext, ConnectorError, InboundRequest
from connectors.config import config_problems
from connectors.webhook import SPEC, SignatureError, WebhookTrigger

SECRET = "shpss_current-secret-0123456789"
OLD_SECRET = "shpss_previous-secret-9876543210"
BODY = b'{"id": 820982911946154508, "order_number": 1001, "note": "caf\xc3\xa9"}'
NOW = 1_700_000_000


def ctx(signature: Mapping[str, Any] | None, **secrets: str) -> ConnectorContext:
    step = {"signature": dict(signature)} if signature is not None else {}
    return ConnectorContext({}, secrets, step, logging.getLogger("test"), http=None)


def request(headers: Mapping[str, str], body: bytes = BODY) -> InboundRequest:
    return InboundRequest(headers=dict(headers), body=body, payload={"parsed": True})


def digest(secret: str, data: bytes) -> bytes:
    return hmac.new(secret.encode(), data, hashlib.sha256).digest()


def shopify(secret: str, body: bytes = BODY) -> str:
    return base64.b64encode(digest(secret, body)).decode()


def github(secret: str, body: bytes = BODY) -> str:
    return "sha256=" + digest(secret, body).hex()


def stripe(*secrets: str, t: int = NOW, body: bytes = BODY) -> str:
    signed = f"{t}.".encode() + body
    return ",".join([f"t={t}", *(f"v1={digest(s, signed).hex()}" for s in secrets)])


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook, "_now", lambda: float(NOW))


def accept(
    signature: Mapping[str, Any] | None, headers: Mapping[str, str], body: bytes = BODY, **secrets
) -> list[Any]:
    return WebhookTrigger().accept(ctx(signature, **secrets), request(headers, body))


def rejected(
    signature: Mapping[str, Any] | None, headers: Mapping[str, str], body: bytes = BODY, **secrets
) -> SignatureError:
    with pytest.raises(SignatureError) as info:
        accept(signature, headers, body, **secrets)
    message = info.value.message
    for secret in filter(None, secrets.values()):
        assert secret not in message  # never echo a secret...
    for value in filter(str.strip, headers.values()):
        assert value not in message  # ...nor the signature received
    return info.value


# --- spec and schema ---


def test_spec_declares_signing_secrets_and_an_empty_connection_schema() -> None:
    assert SPEC.secret_fields == ("signing_secret", "previous_signing_secret")
    assert SPEC.kind == "trigger" and SPEC.requires_connection is False
    assert config_problems(SPEC.connection_schema, {}) == []
    Draft202012Validator.check_schema(SPEC.step_schema)
    Draft202012Validator.check_schema(SPEC.connection_schema)


@pytest.mark.parametrize(
    "signature",
    [
        {"scheme": "none"},
        {"scheme": "shopify"},
        {"scheme": "github"},
        {"scheme": "stripe", "tolerance_seconds": 600},
        {"scheme": "hmac_sha256", "header": "X-Signature", "encoding": "base64"},
    ],
)
def test_step_schema_accepts_each_scheme(signature: dict[str, Any]) -> None:
    assert config_problems(SPEC.step_schema, {"signature": signature}) == []


@pytest.mark.parametrize(
    "signature, path",
    [
        ({"scheme": "md5"}, "/signature/scheme"),
        ({"scheme": "hmac_sha256"}, "/signature/header"),  # the header must be named
        ({"scheme": "hmac_sha256", "header": "X Sig"}, "/signature/header"),
        ({"scheme": "hmac_sha256", "header": "X-Sig", "encoding": "b32"}, "/signature/encoding"),
        ({"scheme": "stripe", "tolerance_seconds": 0}, "/signature/tolerance_seconds"),
        ({"scheme": "github", "secret": "s"}, "/signature/secret"),  # secrets never go here
        ({}, "/signature/scheme"),
    ],
)
def test_step_schema_refuses_bad_signature_options(signature: dict[str, Any], path: str) -> None:
    assert path in [p for p, _ in config_problems(SPEC.step_schema, {"signature": signature})]


# --- no signature configured ---


def test_no_signature_config_accepts_unsigned_requests() -> None:
    assert accept(None, {}) == [{"parsed": True}]
    assert accept({"scheme": "none"}, {}) == [{"parsed": True}]


def test_signature_error_is_a_permanent_connector_error() -> None:
    assert issubclass(SignatureError, ConnectorError) and not SignatureError.retryable


# --- Shopify ---


def test_shopify_valid_signature_is_accepted() -> None:
    headers = {"X-Shopify-Hmac-Sha256": shopify(SECRET)}
    assert accept({"scheme": "shopify"}, headers, signing_secret=SECRET) == [{"parsed": True}]


def test_shopify_header_name_is_case_insensitive() -> None:
    headers = {"x-shopify-hmac-sha256": shopify(SECRET)}
    assert accept({"scheme": "shopify"}, headers, signing_secret=SECRET)


def test_shopify_tampered_body_is_rejected() -> None:
    headers = {"X-Shopify-Hmac-Sha256": shopify(SECRET)}
    error = rejected({"scheme": "shopify"}, headers, BODY + b" ", signing_secret=SECRET)
    assert "does not match" in error.message


def test_shopify_wrong_secret_and_garbage_are_rejected() -> None:
    for value in (shopify("another-secret"), "not base64!", "", "   ", digest(SECRET, BODY).hex()):
        rejected({"scheme": "shopify"}, {"X-Shopify-Hmac-Sha256": value}, signing_secret=SECRET)


def test_shopify_missing_header_is_rejected_by_name() -> None:
    error = rejected({"scheme": "shopify"}, {"X-Other": "irrelevant"}, signing_secret=SECRET)
    assert "X-Shopify-Hmac-Sha256" in error.message and "missing" in error.message


# --- GitHub ---


def test_github_valid_signature_is_accepted() -> None:
    headers = {"X-Hub-Signature-256": github(SECRET)}
    assert accept({"scheme": "github"}, headers, signing_secret=SECRET)


def test_github_uppercase_hex_is_accepted() -> None:
    prefix, hexdigest = github(SECRET).split("=")
    headers = {"X-Hub-Signature-256": f"{prefix}={hexdigest.upper()}"}
    assert accept({"scheme": "github"}, headers, signing_secret=SECRET)


@pytest.mark.parametrize(
    "value",
    [
        github(SECRET, BODY + b"x"),
        github(SECRET).removeprefix("sha256="),  # no algorithm prefix
        "sha1=" + hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest(),  # the old header
        "sha256=zz",
        "sha256=",
    ],
)
def test_github_bad_signatures_are_rejected(value: str) -> None:
    rejected({"scheme": "github"}, {"X-Hub-Signature-256": value}, signing_secret=SECRET)


def test_github_missing_header_is_rejected() -> None:
    error = rejected({"scheme": "github"}, {}, signing_secret=SECRET)
    assert "X-Hub-Signature-256" in error.message


# --- generic HMAC-SHA256 ---


@pytest.mark.parametrize(
    "encoding, encode",
    [
        ("hex", lambda raw: raw.hex()),
        ("base64", lambda raw: base64.b64encode(raw).decode()),
    ],
)
def test_hmac_sha256_in_the_configured_header_and_encoding(encoding: str, encode: Any) -> None:
    signature = {"scheme": "hmac_sha256", "header": "X-Acme-Signature", "encoding": encoding}
    good = {"X-Acme-Signature": encode(digest(SECRET, BODY))}
    assert accept(signature, good, signing_secret=SECRET)
    bad = {"X-Acme-Signature": encode(digest(SECRET, BODY + b"!"))}
    rejected(signature, bad, signing_secret=SECRET)
    rejected(signature, {"X-Other-Signature": encode(digest(SECRET, BODY))}, signing_secret=SECRET)


def test_hmac_sha256_encoding_defaults_to_hex() -> None:
    signature = {"scheme": "hmac_sha256", "header": "X-Sig"}
    assert accept(signature, {"X-Sig": digest(SECRET, BODY).hex()}, signing_secret=SECRET)
    b64 = base64.b64encode(digest(SECRET, BODY)).decode()
    rejected(signature, {"X-Sig": b64}, signing_secret=SECRET)


def test_signature_covers_the_raw_bytes_not_the_parsed_json() -> None:
    # Same JSON document, different bytes: a signature over one does not vouch for the other.
    reformatted = b'{"id":820982911946154508,"order_number":1001,"note":"caf\\u00e9"}'
    headers = {"X-Shopify-Hmac-Sha256": shopify(SECRET)}
    rejected({"scheme": "shopify"}, headers, reformatted, signing_secret=SECRET)


# --- Stripe ---


def test_stripe_valid_signature_is_accepted() -> None:
    headers = {"Stripe-Signature": stripe(SECRET)}
    assert accept({"scheme": "stripe"}, headers, signing_secret=SECRET)


def test_stripe_any_of_several_v1_values_may_match() -> None:
    # Stripe sends one v1 per active endpoint secret while the sender rolls its secret.
    headers = {"Stripe-Signature": stripe("sender-side-old-secret", SECRET)}
    assert accept({"scheme": "stripe"}, headers, signing_secret=SECRET)
    headers = {"Stripe-Signature": stripe(SECRET, "sender-side-new-secret")}
    assert accept({"scheme": "stripe"}, headers, signing_secret=SECRET)


def test_stripe_ignores_v0_and_unknown_parts() -> None:
    value = stripe(SECRET) + ",v0=" + "00" * 32 + ",scheme=x"
    assert accept({"scheme": "stripe"}, {"Stripe-Signature": value}, signing_secret=SECRET)


def test_stripe_v0_alone_is_not_enough() -> None:
    signed = f"{NOW}.".encode() + BODY
    value = f"t={NOW},v0={digest(SECRET, signed).hex()}"
    rejected({"scheme": "stripe"}, {"Stripe-Signature": value}, signing_secret=SECRET)


@pytest.mark.parametrize("offset, ok", [(0, True), (-300, True), (300, True), (-301, False)])
def test_stripe_default_tolerance_is_five_minutes(offset: int, ok: bool) -> None:
    headers = {"Stripe-Signature": stripe(SECRET, t=NOW + offset)}
    if ok:
        assert accept({"scheme": "stripe"}, headers, signing_secret=SECRET)
    else:
        error = rejected({"scheme": "stripe"}, headers, signing_secret=SECRET)
        assert "300 seconds" in error.message


def test_stripe_timestamps_far_in_the_future_are_rejected_too() -> None:
    headers = {"Stripe-Signature": stripe(SECRET, t=NOW + 301)}
    rejected({"scheme": "stripe"}, headers, signing_secret=SECRET)


def test_stripe_tolerance_is_configurable() -> None:
    headers = {"Stripe-Signature": stripe(SECRET, t=NOW - 500)}
    rejected({"scheme": "stripe"}, headers, signing_secret=SECRET)
    signature = {"scheme": "stripe", "tolerance_seconds": 600}
    assert accept(signature, headers, signing_secret=SECRET)


def test_stripe_expired_timestamp_with_several_v1_values_is_rejected() -> None:
    headers = {"Stripe-Signature": stripe("other", SECRET, t=NOW - 3600)}
    rejected({"scheme": "stripe"}, headers, signing_secret=SECRET)


def test_stripe_timestamp_is_signed() -> None:
    # A valid signature replayed with a fresh timestamp no longer matches.
    old = stripe(SECRET, t=NOW - 3600)
    replayed = old.replace(f"t={NOW - 3600}", f"t={NOW}")
    rejected({"scheme": "stripe"}, {"Stripe-Signature": replayed}, signing_secret=SECRET)


@pytest.mark.parametrize(
    "value",
    [
        "v1=" + "ab" * 32,  # no timestamp
        f"t={NOW}",  # no v1
        f"t=soon,v1={'ab' * 32}",
        f"t=１７００００００００,v1={'ab' * 32}",  # non-ASCII digits
        f"t={'9' * 5000},v1={'ab' * 32}",  # longer than int() accepts
        f"t={NOW},v1=nothex",
        "garbage",
    ],
)
def test_stripe_malformed_headers_are_rejected(value: str) -> None:
    rejected({"scheme": "stripe"}, {"Stripe-Signature": value}, signing_secret=SECRET)


def test_stripe_missing_header_is_rejected() -> None:
    error = rejected({"scheme": "stripe"}, {}, signing_secret=SECRET)
    assert "Stripe-Signature" in error.message


def test_stripe_style_signatures_in_another_header() -> None:
    signature = {"scheme": "stripe", "header": "X-Acme-Signature"}
    assert accept(signature, {"X-Acme-Signature": stripe(SECRET)}, signing_secret=SECRET)
    rejected(signature, {"Stripe-Signature": stripe(SECRET)}, signing_secret=SECRET)


# --- fail closed ---


@pytest.mark.parametrize(
    "signature, header, value",
    [
        ({"scheme": "shopify"}, "X-Shopify-Hmac-Sha256", shopify("")),
        ({"scheme": "github"}, "X-Hub-Signature-256", github("")),
        ({"scheme": "stripe"}, "Stripe-Signature", stripe("")),
        ({"scheme": "hmac_sha256", "header": "X-Sig"}, "X-Sig", digest("", BODY).hex()),
    ],
)
@pytest.mark.parametrize(
    "secrets", [{}, {"signing_secret": ""}, {"signing_secret": "", "previous_signing_secret": ""}]
)
def test_an_empty_or_missing_secret_fails_closed(
    signature: dict[str, Any], header: str, value: str, secrets: dict[str, str]
) -> None:
    # Signed with the empty key, which anyone can compute: still refused.
    error = rejected(signature, {header: value}, **secrets)
    assert "no signing secret" in error.message


def test_missing_secret_is_reported_before_the_missing_header() -> None:
    error = rejected({"scheme": "github"}, {})
    assert "no signing secret" in error.message


# --- rotation ---


@pytest.mark.parametrize(
    "scheme, header, sign",
    [
        ("shopify", "X-Shopify-Hmac-Sha256", shopify),
        ("github", "X-Hub-Signature-256", github),
        ("stripe", "Stripe-Signature", stripe),
    ],
)
def test_rotation_accepts_the_current_and_the_previous_secret(
    scheme: str, header: str, sign: Any
) -> None:
    secrets = {"signing_secret": SECRET, "previous_signing_secret": OLD_SECRET}
    assert accept({"scheme": scheme}, {header: sign(SECRET)}, **secrets)
    assert accept({"scheme": scheme}, {header: sign(OLD_SECRET)}, **secrets)
    rejected({"scheme": scheme}, {header: sign("a-third-secret")}, **secrets)
    # Once the previous secret is removed, the old signature stops working.
    rejected({"scheme": scheme}, {header: sign(OLD_SECRET)}, signing_secret=SECRET)


def test_previous_secret_alone_still_verifies() -> None:
    headers = {"X-Hub-Signature-256": github(OLD_SECRET)}
    assert accept({"scheme": "github"}, headers, previous_signing_secret=OLD_SECRET)


# --- timing safety and secrecy ---


@pytest.mark.parametrize(
    "scheme, header, value",
    [
        ("shopify", "X-Shopify-Hmac-Sha256", shopify("wrong")),
        ("github", "X-Hub-Signature-256", github("wrong")),
        ("stripe", "Stripe-Signature", stripe("wrong", "also-wrong")),
        ("shopify", "X-Shopify-Hmac-Sha256", shopify(SECRET)),
    ],
)
def test_comparisons_use_hmac_compare_digest_for_every_candidate(
    monkeypatch: pytest.MonkeyPatch, scheme: str, header: str, value: str
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhook.hmac, "compare_digest", spy)
    secrets = {"signing_secret": SECRET, "previous_signing_secret": OLD_SECRET}
    try:
        WebhookTrigger().verify(ctx({"scheme": scheme}, **secrets), request({header: value}))
    except SignatureError:
        pass
    received = 2 if scheme == "stripe" else 1
    # Every received signature is compared with every secret's digest: no early exit.
    assert len(calls) == received * 2


def test_verify_does_not_need_the_parsed_payload() -> None:
    # The web layer verifies before parsing: payload is None at that point.
    raw = InboundRequest(headers={"X-Hub-Signature-256": github(SECRET)}, body=BODY, payload=None)
    WebhookTrigger().verify(ctx({"scheme": "github"}, signing_secret=SECRET), raw)


def test_rejections_never_reveal_the_expected_signature() -> None:
    expected_hex = digest(SECRET, BODY).hex()
    expected_b64 = base64.b64encode(digest(SECRET, BODY)).decode()
    for scheme, header in (("shopify", "X-Shopify-Hmac-Sha256"), ("github", "X-Hub-Signature-256")):
        error = rejected({"scheme": scheme}, {header: "sha256=00"}, signing_secret=SECRET)
        text = str(error) + repr(error.args)
        assert expected_hex not in text and expected_b64 not in text and SECRET not in text


# --- the connection's check() ---


def test_check_reports_whether_a_signing_secret_is_stored() -> None:
    trigger = WebhookTrigger()
    assert trigger.check(ctx(None, signing_secret=SECRET)) == CheckResult(
        ok=True, message="a signing secret is stored"
    )
    assert trigger.check(ctx(None)).ok is False
