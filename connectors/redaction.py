"""Masking secret values out of text that ends up in run history, logs or error messages.

A destination may echo what it received (an ``Authorization`` header, a JSON copy of the
request), so masking the raw secret is not enough: the encodings a server is likely to echo
are masked too (n8n GHSA-vrv8-j27g-g7cr leaked credentials through execution data).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import quote

MASK = "********"


class Redactor:
    """Replaces every known secret value (and its common encodings) with ``MASK``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        variants: set[str] = set()
        for secret in secrets:
            if secret:
                variants.update(_variants(secret))
        # Longest first, so a secret containing another secret is masked whole.
        self._variants = sorted(variants, key=len, reverse=True)

    def with_values(self, values: Iterable[str]) -> Redactor:
        """A redactor that also masks ``values`` (e.g. a derived ``Basic`` credential)."""
        combined = Redactor(values)
        combined._variants = sorted(
            set(self._variants) | set(combined._variants), key=len, reverse=True
        )
        return combined

    def __call__(self, text: str) -> str:
        """Return ``text`` with every secret occurrence replaced by ``MASK``."""
        for variant in self._variants:
            if variant in text:
                text = text.replace(variant, MASK)
        return text


def _variants(secret: str) -> set[str]:
    return (
        {
            secret,
            json.dumps(secret, ensure_ascii=False)[1:-1],  # as it appears inside a JSON string
            json.dumps(secret)[1:-1],
            quote(secret, safe=""),  # as it appears in a query string or form body
        }
        - {""}
    )
