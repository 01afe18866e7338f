"""Validating connector configuration against the JSON Schemas connectors declare.

One function serves the API (422 with every problem at once), flow validation and the
worker, so a connector never hand-writes a validator (house rule 4).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

Problem = tuple[str, str]


def config_problems(schema: Mapping[str, Any], value: Any) -> list[Problem]:
    """Every way ``value`` breaks ``schema``, as (JSON pointer, message), sorted by path.

    Missing and unknown fields are reported at the field's own pointer (``/base_url``) so a
    form can mark the right input. A property may carry ``errorMessage`` (the ajv-errors
    convention: a string, or a dict keyed by keyword) to replace a cryptic default message.
    Messages may quote the offending value: validate secrets by presence, not with this.
    """
    validator = Draft202012Validator(schema)
    problems: set[Problem] = set()
    for error in validator.iter_errors(value):
        problems.update(_describe(error))
    return sorted(problems)


def apply_defaults(schema: Mapping[str, Any], value: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``value`` with missing top-level properties set to their schema default."""
    result = dict(value)
    for name, prop in (schema.get("properties") or {}).items():
        if name not in result and isinstance(prop, Mapping) and "default" in prop:
            result[name] = copy.deepcopy(prop["default"])
    return result


def json_pointer(parts: Iterable[str | int]) -> str:
    """RFC 6901 pointer for a path; the document root is ``""``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _describe(error: ValidationError) -> list[Problem]:
    path: list[str | int] = list(error.absolute_path)
    instance = error.instance
    if _about_property_name(error):
        path.append(str(instance))  # point at the offending key, not at its parent object
    if error.validator == "required" and isinstance(instance, Mapping):
        return [
            (json_pointer([*path, name]), "is required")
            for name in error.validator_value
            if name not in instance
        ]
    if (
        error.validator == "additionalProperties"
        and error.validator_value is False
        and isinstance(instance, Mapping)
    ):
        return [
            (json_pointer([*path, name]), "is not a known field")
            for name in _unexpected(error.schema, instance)
        ]
    return [(json_pointer(path), _message(error))]


def _about_property_name(error: ValidationError) -> bool:
    schema_path = list(error.absolute_schema_path)
    return isinstance(error.instance, str) and any(
        part == "propertyNames" and (i == 0 or schema_path[i - 1] != "properties")
        for i, part in enumerate(schema_path)
    )


def _unexpected(schema: Mapping[str, Any], instance: Mapping[str, Any]) -> list[str]:
    known = schema.get("properties") or {}
    patterns = schema.get("patternProperties") or {}
    return [
        name
        for name in instance
        if name not in known and not any(re.search(p, name) for p in patterns)
    ]


def _message(error: ValidationError) -> str:
    custom = error.schema.get("errorMessage") if isinstance(error.schema, Mapping) else None
    if isinstance(custom, str):
        return custom
    if isinstance(custom, Mapping) and isinstance(custom.get(error.validator), str):
        return str(custom[error.validator])
    if error.validator == "pattern" and isinstance(error.schema, Mapping):
        hint = error.schema.get("description")
        return f"{error.instance!r} is not in the expected format" + (f": {hint}" if hint else "")
    return error.message
