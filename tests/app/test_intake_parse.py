"""Issue #5, round 8: the webhook body is parsed by orjson, and falls back to the strict
``json`` parse wherever orjson's result or error could differ (bench/README.md)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from app.services import intake
from app.services.intake import BadRequest, parse_json_body

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "retail"
MAX_DEPTH = 64


def _strict(body: bytes) -> Any:
    return intake._parse_strictly(body)


@pytest.mark.parametrize("fixture", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.name)
def test_every_retail_fixture_parses_to_what_the_strict_parse_gives(
    fixture: Path, monkeypatch
) -> None:
    body = fixture.read_bytes()
    strict = _strict(body)

    def not_expected(_body: bytes) -> Any:
        raise AssertionError("the fast path should take a well-formed order")

    monkeypatch.setattr(intake, "_parse_strictly", not_expected)
    assert parse_json_body(body, MAX_DEPTH) == strict


def test_random_documents_parse_alike_including_keys_with_colons_quotes_and_escapes() -> None:
    rng = random.Random(8)
    strings = ['a:"b', "x\\y:", '\\":', "::", "é:{", '\\u003a"', "", "k"]

    def document(level: int) -> Any:
        roll = rng.random()
        if level > 5 or roll < 0.3:
            return rng.choice([*strings, 1, -7, None, 2.5, True, 1e300])
        if roll < 0.6:
            return [document(level + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(strings) + str(i): document(level + 1) for i in range(4)}

    for _ in range(1500):
        value = document(0)
        for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=1)):
            body = text.encode()
            parsed = parse_json_body(body, MAX_DEPTH)
            assert parsed == value == _strict(body)
            assert json.dumps(parsed) == json.dumps(value)  # same key order, same types


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"a": {"b": 1, "c": [1, {"d": 2, "d": 3}]}}', "duplicate key 'd'"),
        (b'{"x:y": 1, "x:y": 2}', "duplicate key 'x:y'"),
        (b'{"q\\"": 1, "q\\"": 2}', "duplicate key 'q\"'"),
        (b"[NaN]", "NaN is not valid JSON"),
        (b'{"a": -Infinity}', "-Infinity is not valid JSON"),
        (b"[1e999]", "too large to store"),
        (b'["\\ud800"]', "lone UTF-16 surrogate"),
        (b'["\\u0000"]', "U+0000"),
        (b'{"\\u0000": 1}', "U+0000"),
        (b'["\xff"]', "not valid UTF-8"),
        (b"\xef\xbb\xbf{}", "malformed JSON"),
        (b"[1,]", "malformed JSON"),
        (b'{"a": 1} {"b": 2}', "malformed JSON"),
    ],
)
def test_what_the_strict_parse_refuses_is_refused_with_its_words(body: bytes, problem) -> None:
    with pytest.raises(BadRequest, match=re.escape(problem)):
        parse_json_body(body, MAX_DEPTH)


def test_integers_beyond_64_bits_keep_every_digit() -> None:
    body = b'{"order_id": 123456789012345678901234567890, "n": -9223372036854775809}'
    parsed = parse_json_body(body, MAX_DEPTH)
    assert parsed == {"order_id": 123456789012345678901234567890, "n": -9223372036854775809}
    assert isinstance(parsed["order_id"], int)


@pytest.mark.parametrize(("body", "value"), [(b"1", 1), (b'"x:y"', "x:y"), (b"[]", [])])
def test_a_body_that_is_not_an_object_still_parses(body: bytes, value: Any) -> None:
    assert parse_json_body(body, MAX_DEPTH) == value
