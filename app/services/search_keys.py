"""The exact-match search keys stored for each run (see app/models/run_key.py for why).

A run is found by its business key and by the identifiers in its payload that support
staff paste: order numbers, SKUs/EANs and e-mail addresses, wherever they sit in the
message (``line_items[].sku``, ``customer.email``…). E-mails are lower-cased both when
stored and when searched, so ``Jane@Example.com`` finds ``jane@example.com``.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import repeat
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
    verdicts = _VERDICTS
    # Depth first in document order, like a recursive walk (same keys kept under the cap),
    # with a stack of (field iterator, depth of its fields) instead of Python recursion.
    # Exact types first: a parsed message holds only dict, list, str, int, float, bool and
    # None, and each test below costs a message about 240 times (half of intake's walk
    # went to isinstance calls and a function call per field; bench/README.md round 8).
    stack: list[tuple[Iterator[tuple[Any, Any]], int]] = [(iter(((None, payload),)), 0)]
    while stack and len(found) < MAX_KEYS_PER_RUN:
        fields, depth = stack[-1]
        for name, value in fields:
            kind = type(value)
            if kind is not str and kind is not int:
                if (
                    kind is dict
                    or kind is list
                    or (kind not in _LEAVES and isinstance(value, (dict, list)))
                ):
                    if depth <= MAX_DEPTH:
                        stack.append(_fields(value, depth + 1))
                        break
                    continue
                if kind in _LEAVES or not _str_or_int(value):
                    continue
            if name is None:
                continue  # an array item: only named fields are keys
            verdict = verdicts.get(name)
            if not (_is_key_field(str(name)) if verdict is None else verdict):
                continue
            text = normalise(str(value))[:255]
            if text:
                found[text] = None
                if len(found) >= MAX_KEYS_PER_RUN:
                    break
        else:
            stack.pop()
    return list(found)


_LEAVES = frozenset((float, bool, type(None)))


def _str_or_int(value: Any) -> bool:
    """For subclasses, which a JSON parse never gives (bool is an int, not a key)."""
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _fields(container: Any, depth: int) -> tuple[Iterator[tuple[Any, Any]], int]:
    """(name, value) pairs of a dict, (None, item) of a list, and the depth of its fields."""
    if isinstance(container, dict):
        return iter(container.items()), depth
    return zip(repeat(None), container), depth
