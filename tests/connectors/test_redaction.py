"""Redactor: secrets and the encodings a destination is likely to echo are masked."""

from __future__ import annotations

import json
from urllib.parse import quote

from connectors.redaction import MASK, Redactor


def test_masks_raw_json_escaped_and_url_encoded_forms() -> None:
    secret = 'p@ss/"wörd"'
    text = f"raw={secret} json={json.dumps(secret)} ascii={json.dumps(secret, ensure_ascii=False)}"
    text += f" url={quote(secret, safe='')}"
    redacted = Redactor([secret])(text)
    assert "ss/" not in redacted and "w\\u00f6rd" not in redacted and "p%40ss" not in redacted
    assert redacted.count(MASK) == 4


def test_empty_secrets_are_ignored_and_derived_values_added() -> None:
    redact = Redactor(["", "abc"]).with_values(["YWxpY2U6YWJj"])
    assert redact("abc YWxpY2U6YWJj keep") == f"{MASK} {MASK} keep"
