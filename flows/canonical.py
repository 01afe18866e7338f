"""The canonical retail model: versioned JSON Schemas of the neutral shapes mappings produce.

Schemas ship as package data in ``flows/schemas/<name>.v<version>.json`` (draft 2020-12). A
deliver step may declare ``input_schema: {"name": "order", "version": 1}``; the engine checks
its input with :func:`validate` before any outbound call.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

_FILE = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.json$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class UnknownSchema(LookupError):
    """No canonical schema of that name (and version)."""


@dataclass(frozen=True)
class SchemaInfo:
    name: str
    version: int
    title: str
    description: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "title": self.title,
            "description": self.description,
        }


@dataclass(frozen=True)
class SchemaProblem:
    path: str  # JSON pointer into the instance ("" is the whole document)
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


_formats = FormatChecker(formats=("email",))


@_formats.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    """RFC 3339 date-time with an offset (jsonschema's own check needs an extra package)."""
    if not isinstance(value, str):
        return True
    if not _DATE_TIME.match(value):
        return False
    datetime.fromisoformat(value.upper().replace("Z", "+00:00"))  # rejects e.g. month 13
    return True


@lru_cache(maxsize=1)
def _files() -> dict[tuple[str, int], str]:
    found: dict[tuple[str, int], str] = {}
    for entry in resources.files("flows").joinpath("schemas").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found[(match["name"], int(match["version"]))] = entry.name
    return found


def latest_version(name: str) -> int:
    versions = [v for n, v in _files() if n == name]
    if not versions:
        raise UnknownSchema(f"no canonical schema '{name}'")
    return max(versions)


def exists(name: str, version: int | None = None) -> bool:
    if version is None:
        return any(n == name for n, _ in _files())
    return (name, version) in _files()


@lru_cache(maxsize=64)
def _load(name: str, version: int) -> str:
    filename = _files().get((name, version))
    if filename is None:
        raise UnknownSchema(f"no canonical schema '{name}' version {version}")
    return resources.files("flows").joinpath("schemas", filename).read_text(encoding="utf-8")


def load(name: str, version: int | None = None) -> dict[str, Any]:
    """The schema document (a fresh copy); the latest version when ``version`` is None."""
    return json.loads(_load(name, version if version is not None else latest_version(name)))


def list_schemas() -> list[SchemaInfo]:
    """Every shipped schema version, by name then version."""
    infos = []
    for name, version in sorted(_files()):
        doc = load(name, version)
        infos.append(SchemaInfo(name, version, doc.get("title", name), doc.get("description", "")))
    return infos


@lru_cache(maxsize=64)
def _validator(name: str, version: int) -> Draft202012Validator:
    return Draft202012Validator(load(name, version), format_checker=_formats)


def _pointer(parts: Any) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def validate(name: str, version: int, instance: Any) -> list[SchemaProblem]:
    """Every way ``instance`` breaks the schema, with JSON pointers into the instance."""
    errors = sorted(
        _validator(name, version).iter_errors(instance),
        key=lambda e: [str(p) for p in e.absolute_path],
    )
    return [SchemaProblem(_pointer(e.absolute_path), e.message) for e in errors]
