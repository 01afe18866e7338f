"""Answer a few trivially bounded JSONata expressions without a sandbox round trip.

A business key such as ``$string(order_number)`` or a filter such as
``financial_status = 'paid'`` is evaluated for every message, and through the sandbox
(``flows.sandbox``) each costs an encode, a pipe round trip and a decode in two processes.
These shapes need none of that: their cost is a few dict lookups, whatever the input, so no
time or memory limit can be at stake. Only these are recognised:

* ``a.b.c``: a path of plain names (no wildcard, filter, function, variable or keyword);
* ``$string(a.b.c)``;
* ``a.b.c = 'text'`` (or ``"text"``, no escapes).

And only when every step of the path walks a JSON object (an array on the way makes JSONata
map over it, which is left to JSONata), and the value found is one whose JSONata result is
certain: for a path or ``$string``, a string or an integer that JSONata prints in full; for
``=``, any scalar or a missing key. Everything else returns ``UNKNOWN`` and goes to the
sandbox as before, so the answer is always the one JSONata gives.
"""

from __future__ import annotations

import re
from typing import Any

UNKNOWN = object()

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PATH = rf"{_NAME}(?:\.{_NAME})*"
_PATH_ONLY = re.compile(rf"\s*({_PATH})\s*")
_STRING_OF = re.compile(rf"\s*\$string\(\s*({_PATH})\s*\)\s*")
_EQUALS = re.compile(rf"\s*({_PATH})\s*=\s*(?:'([^'\\]*)'|\"([^\"\\]*)\")\s*")
_KEYWORDS = frozenset({"and", "or", "in", "true", "false", "null", "function"})
_MISSING = object()
_MAX_EXACT_INT = 10**21  # flows.mapping prints ints below this in full (like str())


def _walk(path: str, data: Any) -> Any:
    """The value at ``path`` (``_MISSING`` if a key is absent), or UNKNOWN off the plain
    object path."""
    names = path.split(".")
    if any(name in _KEYWORDS for name in names):
        return UNKNOWN
    node = data
    for name in names:
        if not isinstance(node, dict):
            return UNKNOWN
        node = node.get(name, _MISSING)
        if node is _MISSING:
            return _MISSING
    return node


def _exact(value: Any) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < _MAX_EXACT_INT


def evaluate(expression: str, data: Any) -> Any:
    """The result ``flows.mapping.evaluate`` would give, or UNKNOWN."""
    match = _PATH_ONLY.fullmatch(expression) or _STRING_OF.fullmatch(expression)
    if match is None:
        return UNKNOWN
    value = _walk(match.group(1), data)
    if value is _MISSING:
        return None  # undefined, and $string(undefined) is undefined too
    if value is UNKNOWN or not _exact(value):
        return UNKNOWN
    if match.re is _STRING_OF:
        return value if isinstance(value, str) else str(value)
    return value


def evaluate_condition(expression: str, data: Any) -> Any:
    """The truth ``flows.mapping.evaluate_condition`` would give, or UNKNOWN."""
    match = _EQUALS.fullmatch(expression)
    if match is None:
        return UNKNOWN
    value = _walk(match.group(1), data)
    if value is _MISSING:
        return False  # undefined = anything is false
    if value is UNKNOWN or isinstance(value, (dict, list)):
        return UNKNOWN
    text = match.group(2) if match.group(2) is not None else match.group(3)
    return isinstance(value, str) and value == text  # no coercion between types in JSONata
