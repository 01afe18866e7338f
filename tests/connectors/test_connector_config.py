"""config_problems / apply_defaults: every problem at once, each at its field's pointer."""

from __future__ import annotations

from connectors.config import apply_defaults, config_problems, json_pointer
from connectors.http import SPEC as HTTP_SPEC

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "default": "x"},
        "size": {"type": "integer", "minimum": 1, "default": 3},
        "tags": {"type": "object", "additionalProperties": {"type": "string"}, "default": {}},
        "mode": {"enum": ["a", "b"], "errorMessage": "pick a or b"},
        "url": {"type": "string", "pattern": "^https://", "description": "An https URL."},
    },
    "required": ["name", "url"],
    "additionalProperties": False,
}


def test_returns_every_problem_sorted_by_pointer() -> None:
    value = {"size": 0, "tags": {"a/b": 1}, "mode": "c", "url": "http://x", "extra": True}
    assert config_problems(SCHEMA, value) == [
        ("/extra", "is not a known field"),
        ("/mode", "pick a or b"),
        ("/name", "is required"),
        ("/size", "0 is less than the minimum of 1"),
        ("/tags/a~1b", "1 is not of type 'string'"),
        ("/url", "'http://x' is not in the expected format: An https URL."),
    ]


def test_valid_config_has_no_problems() -> None:
    assert config_problems(SCHEMA, {"name": "n", "url": "https://x"}) == []


def test_non_object_is_reported_at_the_root() -> None:
    assert config_problems(SCHEMA, []) == [("", "[] is not of type 'object'")]


def test_http_connection_problems_point_at_fields() -> None:
    value = {
        "base_url": "ftp://files.example",
        "auth": "basic",
        "timeout_seconds": 500,
        "headers": {"Authorization": "Bearer pasted-here", "Bad Name": "v"},
        "password": "pasted-here",
    }
    paths = [path for path, _ in config_problems(HTTP_SPEC.connection_schema, value)]
    assert paths == [
        "/base_url",
        "/headers/Authorization",
        "/headers/Bad Name",
        "/password",
        "/timeout_seconds",
        "/username",
    ]


def test_apply_defaults_fills_missing_top_level_properties_only() -> None:
    value = {"name": "kept"}
    filled = apply_defaults(SCHEMA, value)
    assert filled == {"name": "kept", "size": 3, "tags": {}}
    assert value == {"name": "kept"}  # input untouched
    filled["tags"]["k"] = "v"
    assert SCHEMA["properties"]["tags"]["default"] == {}  # defaults are copied


def test_apply_defaults_makes_stored_http_config_explicit() -> None:
    assert apply_defaults(HTTP_SPEC.connection_schema, {"base_url": "https://a.example"}) == {
        "base_url": "https://a.example",
        "headers": {},
        "auth": "none",
        "api_key_header": "X-API-Key",
        "timeout_seconds": 10.0,
    }


def test_json_pointer_escapes_per_rfc_6901() -> None:
    assert json_pointer(["a/b", "m~n", 0]) == "/a~1b/m~0n/0"
    assert json_pointer([]) == ""
