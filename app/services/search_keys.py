"""The exact-match search keys stored for each run (see app/models/run_key.py for why).

A run is found by its business key and by the identifiers in its payload that support
staff paste: order numbers, SKUs/EANs and e-mail addresses, wherever they sit in the
message (``line_items[].sku``, ``customer.email``…). E-mails are lower-cased both when
stored and when searched, so ``Jane@Example.com`` finds ``jane@example.com``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

MAX_KEYS_PER_RUN = 50
MAX_DEPTH = 8
# Field names compared without case, "_" and "-": order_number, orderNumber, order-no…
_FIELD_NAMES = frozenset(
    {
        "ordernumber",
        "orderno",
        "ordernr",
        "orderid",
        "orderref",
        "sku",
        "ean",
        "gtin",
        "email",
        "emailaddress",
        "customeremail",
    }
)
_SUFFIXES = ("sku", "email", "ordernumber")


def normalise(value: str) -> str:
    value = value.strip()
    return value.lower() if "@" in value else value


# Verdicts by field name: payloads repeat the same few dozen names (a 20-line order walks
# about 240 fields), so each name is flattened and compared once per process. Bounded, since
# names come from senders: past the cap, verdicts are computed and not stored.
_VERDICTS: dict[str, bool] = {}
_VERDICTS_MAX = 4096


def _is_key_field(name: str) -> bool:
    verdict = _VERDICTS.get(name)
    if verdict is None:
        flat = name.replace("_", "").replace("-", "").lower()
        verdict = flat in _FIELD_NAMES or flat.endswith(_SUFFIXES)
        if len(_VERDICTS) < _VERDICTS_MAX:
            _VERDICTS[name] = verdict
    return verdict


def extract(payload: Any, business_key: str | None = None) -> list[str]:
    """The distinct search values of one message, at most MAX_KEYS_PER_RUN, each ≤ 255."""
    found: dict[str, None] = {}
    if business_key:
        found[normalise(business_key)[:255]] = None
    # Depth first in document order, like a recursive walk (same keys kept under the cap),
    # with a stack of (field iterator, depth of its fields) instead of Python recursion.
    stack: list[tuple[Iterator[tuple[Any, Any]], int]] = [(iter(((None, payload),)), 0)]
    while stack and len(found) < MAX_KEYS_PER_RUN:
        fields, depth = stack[-1]
        for name, value in fields:
            kind = type(value)
            if kind is dict or kind is list or isinstance(value, (dict, list)):
                if depth <= MAX_DEPTH:
                    if isinstance(value, dict):
                        stack.append((iter(value.items()), depth + 1))
                    else:
                        stack.append((((None, item) for item in value), depth + 1))
                    break
            elif (
                name is not None
                and isinstance(value, (str, int))
                and kind is not bool
                and _is_key_field(str(name))
            ):
                text = normalise(str(value))[:255]
                if text:
                    found[text] = None
                    if len(found) >= MAX_KEYS_PER_RUN:
                        break
        else:
            stack.pop()
    return list(found)
