"""The registry: explicit modules, aliases, a JSON-serialisable catalogue, clean imports."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.base import ConnectorError
from connectors.http import HttpDestination
from connectors.registry import CONNECTOR_MODULES, UnknownConnector, load_registry
from connectors.webhook import WebhookTrigger

ROOT = Path(__file__).resolve().parents[2]
# Every module in the explicit list contributes exactly one key.
EXPECTED_KEYS = sorted(
    importlib.import_module(name).CONNECTOR.spec.key for name in CONNECTOR_MODULES
)


def test_loads_every_listed_connector() -> None:
    registry = load_registry()
    assert registry.keys() == EXPECTED_KEYS
    assert {"http", "webhook"} <= set(EXPECTED_KEYS)
    assert len(EXPECTED_KEYS) == len(CONNECTOR_MODULES)  # no two modules share a key
    assert registry.get("http") is HttpDestination
    assert registry.get("webhook") is WebhookTrigger
    assert isinstance(registry.create("http"), HttpDestination)
    assert registry.spec("webhook").kind == "trigger"


def test_unknown_key_lists_the_known_ones() -> None:
    with pytest.raises(UnknownConnector, match=r"'slack'.*http.*webhook") as info:
        load_registry().get("slack")
    assert isinstance(info.value, ConnectorError)
    assert "slack" not in load_registry()


def test_aliases_resolve_to_the_current_key() -> None:
    registry = load_registry(aliases={"http_request": "http"})
    assert registry.get("http_request") is HttpDestination
    assert "http_request" in registry
    assert registry.keys() == EXPECTED_KEYS


def test_alias_to_an_unknown_key_is_rejected() -> None:
    with pytest.raises(ValueError, match="nowhere"):
        load_registry(aliases={"old": "nowhere"})


def test_module_without_a_connector_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"connectors\.base\.CONNECTOR"):
        load_registry(modules=["connectors.base"])


def test_catalogue_is_sorted_and_json_serialisable() -> None:
    specs = load_registry().specs()
    assert [s.key for s in specs] == EXPECTED_KEYS
    catalogue = {c["key"]: c for c in json.loads(json.dumps([s.to_dict() for s in specs]))}
    assert catalogue["http"]["secret_fields"] == ["password", "token", "api_key", "client_secret"]


def test_imports_have_no_side_effects_and_respect_layering() -> None:
    # A fresh interpreter: importing the registry loads no connector, and loading every
    # connector pulls in none of flows/app/flask/sqlalchemy.
    code = (
        "import sys, connectors.registry as r\n"
        "assert 'connectors.http' not in sys.modules, 'registry imported a connector'\n"
        "r.load_registry()\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('flows', 'app', 'flask', 'sqlalchemy', 'flask_sqlalchemy')]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
