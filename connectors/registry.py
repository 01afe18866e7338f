"""The connector catalogue: an explicit list of modules, loaded when asked, never at import.

Adding a connector means one module exposing ``CONNECTOR = <Class>`` and one line in
``CONNECTOR_MODULES``. Keys never change; a rename goes into ``ALIASES`` (old key -> new key)
so stored flows keep working.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping

from connectors.base import Connector, ConnectorError, ConnectorSpec

CONNECTOR_MODULES: tuple[str, ...] = (
    "connectors.webhook",
    "connectors.http",
    "connectors.sql",
    "connectors.file",
    "connectors.smtp_email",
    "connectors.amqp",
    "connectors.redis_stream",
    "connectors.amqp_queue",
    "connectors.redis_stream_group",
    "connectors.schedule",
    "connectors.manual",
    "connectors.poll_http",
    "connectors.poll_sql",
)
ALIASES: dict[str, str] = {}


class UnknownConnector(ConnectorError):
    """No connector is registered under the requested key (nor as an alias)."""


class ConnectorRegistry:
    """Connector classes by key, with alias resolution."""

    def __init__(
        self, connectors: Iterable[type[Connector]], aliases: Mapping[str, str] | None = None
    ) -> None:
        self._by_key: dict[str, type[Connector]] = {}
        for cls in connectors:
            key = cls.spec.key
            if key in self._by_key:
                raise ValueError(f"connector key {key!r} is registered twice")
            self._by_key[key] = cls
        self._aliases = dict(aliases or {})
        for old, new in self._aliases.items():
            if new not in self._by_key:
                raise ValueError(f"alias {old!r} points to unknown connector {new!r}")

    def keys(self) -> list[str]:
        """Registered keys, sorted (aliases not included)."""
        return sorted(self._by_key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._aliases.get(key, key) in self._by_key

    def get(self, key: str) -> type[Connector]:
        """The connector class for ``key`` or an alias of it; ``UnknownConnector`` otherwise."""
        try:
            return self._by_key[self._aliases.get(key, key)]
        except KeyError:
            known = ", ".join(self.keys()) or "none"
            raise UnknownConnector(
                f"unknown connector {key!r}; known connectors: {known}"
            ) from None

    def spec(self, key: str) -> ConnectorSpec:
        """The spec of the connector registered as ``key``."""
        return self.get(key).spec

    def specs(self) -> list[ConnectorSpec]:
        """Every spec, sorted by key: the public catalogue."""
        return [self._by_key[key].spec for key in self.keys()]

    def create(self, key: str) -> Connector:
        """A fresh connector instance (connectors hold no state between calls)."""
        return self.get(key)()


def load_registry(
    modules: Iterable[str] = CONNECTOR_MODULES, aliases: Mapping[str, str] | None = None
) -> ConnectorRegistry:
    """Import ``modules`` and register the class each exposes as ``CONNECTOR``."""
    classes: list[type[Connector]] = []
    for name in modules:
        module = importlib.import_module(name)
        cls = getattr(module, "CONNECTOR", None)
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise TypeError(f"{name}.CONNECTOR must be a Connector subclass, got {cls!r}")
        classes.append(cls)
    return ConnectorRegistry(classes, ALIASES if aliases is None else aliases)
