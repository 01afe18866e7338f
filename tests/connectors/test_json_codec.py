"""connectors.json_codec gives the standard library's values and errors, only faster."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
from pathlib import Path

import pytest

from connectors import json_codec

RETAIL = Path(__file__).resolve().parents[2].parent / "shared/fixtures/retail"


def _compact(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@pytest.mark.parametrize(
    "text",
    [
        '{"id": 123456789012345678901234567890}',  # beyond 64 bits: json keeps the int
        '{"id": -9999999999999999999}',  # 19 digits below i64's minimum
        '{"id": 18446744073709551616}',  # u64 max + 1
        '{"id": 9223372036854775807, "n": -9223372036854775808}',
        '{"ean": "4006381333931", "price": 12.5, "qty": 2, "ok": true, "none": null}',
        '{"x": 0.1, "y": -0.0, "z": 1.5e300, "w": 5e-324}',
        '{"a": 1, "a": 2}',  # json keeps the last; so must we
        '"\\u00e9t\\u00e9 \\ud83d\\ude00"',
        "[]",
        "NaN",  # orjson refuses; json reads it: the fallback's answer
        "[1e999]",
    ],
)
def test_loads_equals_json_loads(text: str) -> None:
    for data in (text, text.encode("utf-8"), memoryview(text.encode("utf-8"))):
        got, want = json_codec.loads(data), json.loads(text)
        if isinstance(want, float) and math.isnan(want):
            assert math.isnan(got)
        else:
            assert got == want
            assert json.dumps(got) == json.dumps(want)  # same types (an int stays an int)


def test_big_integers_keep_their_value() -> None:
    big = 123456789012345678901234567890
    assert json_codec.loads(f'{{"id": {big}}}') == {"id": big}
    assert type(json_codec.loads("[-9999999999999999999]")[0]) is int


@pytest.mark.parametrize("text", ["", "{", "[1,]", '{"a" 1}', "\ufeff[1]"])
def test_loads_refuses_what_json_refuses(text: str) -> None:
    with pytest.raises(ValueError) as ours:
        json_codec.loads(text)
    with pytest.raises(ValueError) as theirs:
        json.loads(text)
    assert str(ours.value) == str(theirs.value)


def test_dumps_is_the_compact_utf8_form() -> None:
    order = json.loads((RETAIL / "commerce-order-created-20-lines.json").read_text())
    value = {"order": order, "note": "été", "big": 2**70, "none": None, "keys": {"1": 2}}
    assert json.loads(json_codec.dumps(value)) == value
    assert json_codec.dumps(order) == _compact(order)
    assert json_codec.dumps_text(value) == _compact(value).decode("utf-8")


class Colour(enum.IntEnum):
    RED = 1


class Tag(str):
    pass


@dataclasses.dataclass
class Point:
    x: int


def test_dumps_falls_back_to_json_for_what_orjson_treats_its_own_way() -> None:
    assert json_codec.dumps({1: "int key"}) == b'{"1":"int key"}'
    assert json_codec.dumps([Colour.RED, Tag("t"), 2**64]) == b'[1,"t",18446744073709551616]'
    for value in (datetime.datetime(2026, 1, 1), Point(1), {1, 2}, b"bytes"):
        with pytest.raises(TypeError):
            json_codec.dumps(value)


def test_dumps_refuses_nan_only_when_asked() -> None:
    assert json_codec.dumps([None, 1]) == b"[null,1]"
    assert json_codec.dumps([None, 1], allow_nan=False) == b"[null,1]"
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="not JSON compliant"):
            json_codec.dumps({"total": bad, "none": None}, allow_nan=False)


def test_dumps_refuses_a_lone_surrogate_like_utf8_encoding_does() -> None:
    with pytest.raises(UnicodeEncodeError):
        json_codec.dumps({"name": "\ud800"})
