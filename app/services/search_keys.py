"""The exact-match search keys stored for each run (see app/models/run_key.py for why).

A run is found by its business key and by the identifiers in its payload that support
staff paste: order numbers, SKUs/EANs and e-mail addresses, wherever they sit in the
message (``line_items[].sku``, ``customer.email``…). E-mails are lower-cased both when
stored and when searched, so ``Jane@Example.com`` finds ``jane@example.com``.
"""

from __future__ import annotations

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


def _is_key_field(name: str) -> bool:
    flat = name.replace("_", "").replace("-", "").lower()
    return flat in _FIELD_NAMES or flat.endswith(_SUFFIXES)


def extract(payload: Any, business_key: str | None = None) -> list[str]:
    """The distinct search values of one message, at most MAX_KEYS_PER_RUN, each ≤ 255."""
    found: dict[str, None] = {}
    if business_key:
        found[normalise(business_key)[:255]] = None

    def walk(node: Any, depth: int) -> None:
        if depth > MAX_DEPTH or len(found) >= MAX_KEYS_PER_RUN:
            return
        if isinstance(node, dict):
            for name, value in node.items():
                if isinstance(value, (dict, list)):
                    walk(value, depth + 1)
                elif _is_key_field(str(name)) and isinstance(value, (str, int)):
                    if isinstance(value, bool):
                        continue
                    text = normalise(str(value))[:255]
                    if text and len(found) < MAX_KEYS_PER_RUN:
                        found[text] = None
        elif isinstance(node, list):
            for item in node:
                walk(item, depth + 1)

    walk(payload, 0)
    return list(found)
