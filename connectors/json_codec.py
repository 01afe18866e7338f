"""JSON for the hot paths: orjson's speed with the standard library's results.

A worker encodes or decodes each message several times (its payload read back from
PostgreSQL, the mapping's size check, the HTTP body, the batch's final writes). On the
20-line retail order orjson decodes in 36 µs instead of 92 and encodes in 11 µs instead of
142 (measured here, bench/README.md round 7).

orjson is used only where it gives what ``json`` would; everything else falls back to
``json``, so no value and no error changes:

- Integers beyond 64 bits: orjson refuses to encode them, and *decodes them as floats*
  (a silent change of value: an order id of 20 digits would lose its last ones). Text with
  a run of 19 or more digits is therefore decoded by ``json``; a refused encode falls back.
- NaN and infinities: orjson writes ``null``. ``dumps(..., allow_nan=False)`` re-checks
  with ``json`` whenever the output holds a ``null``, and raises ``ValueError`` as it would.
- Lone surrogates, non-string keys, ``str``/``int`` subclasses, datetimes and dataclasses:
  orjson refuses or converts them its own way; they go to ``json`` (passthrough options),
  which converts int keys, encodes subclasses as their base type, and raises as before.
- Text orjson refuses to decode (a byte-order mark, ``NaN``…) is decoded by ``json``, so
  the result or the error message is ``json``'s.

The encoding is the compact one, as UTF-8 bytes: what ``json.dumps(value,
ensure_ascii=False, separators=(",", ":")).encode()`` gives, floats aside (``1e-7``
against ``1e-07``: the same number).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# Integers that may not fit 64 bits: 19 digits already can (-9999999999999999999). Found
# by mapping every digit to "0" and looking for 19 of them: 6 µs on the 5.5 KB order, where
# the regular expression \d{19} took 100 µs (it retries at every digit of every number).
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0000000000")
_LONG_DIGITS = b"0" * 19
_PASSTHROUGH = (
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


class _Refused(TypeError):
    pass


def _refuse(value: Any) -> Any:
    raise _Refused(type(value).__name__)


def dumps(value: Any, *, allow_nan: bool = True) -> bytes:
    """Compact JSON as UTF-8 bytes. Raises what ``json.dumps`` would (``TypeError``,
    ``ValueError``, ``UnicodeEncodeError`` for a lone surrogate)."""
    try:
        text = orjson.dumps(value, default=_refuse, option=_PASSTHROUGH)
    except TypeError:  # orjson.JSONEncodeError is a TypeError; so is _Refused
        return _stdlib_dumps(value, allow_nan)
    if not allow_nan and b"null" in text:
        # Was it a None, or a NaN/infinity that orjson wrote as null? json knows.
        return _stdlib_dumps(value, allow_nan)
    return text


def dumps_text(value: Any) -> str:
    """``dumps`` as a str (for drivers and columns that take text)."""
    return dumps(value).decode("utf-8")


def _stdlib_dumps(value: Any, allow_nan: bool) -> bytes:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=allow_nan)
    return text.encode("utf-8")


def loads(data: str | bytes | bytearray | memoryview) -> Any:
    """Like ``json.loads``, faster when the text holds no integer that may exceed 64 bits."""
    if isinstance(data, memoryview):
        data = bytes(data)
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    value = loads_if_exact(raw)  # bytes already: orjson need not encode the str again
    return json.loads(data) if value is NOT_EXACT else value


# What ``loads_if_exact`` returns when only ``json`` can say what the text holds.
NOT_EXACT: Any = object()


def loads_if_exact(raw: bytes) -> Any:
    """orjson's reading of ``raw`` where it is ``json.loads``'s, else ``NOT_EXACT``: for text
    orjson refuses (a byte-order mark, NaN, a lone surrogate…: ``json`` accepts some of them
    or words the error its own way), and for text with a run of 19 or more digits, an
    integer that may not fit 64 bits, which orjson would decode as a float (a run inside a
    string counts too). A repeated key keeps its last value in both."""
    if raw.translate(_DIGITS_AS_ZERO).find(_LONG_DIGITS) >= 0:
        return NOT_EXACT
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return NOT_EXACT


def loads_strict(data: str | bytes) -> Any:
    """JSON as a message from outside may be: UTF-8 text, no NaN or Infinity, not nested
    past what the parser can walk. ``ValueError`` says which rule was broken (the event
    triggers and the poll share it; webhooks have their own, stricter parse in intake)."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise ValueError("nested too deeply") from None
