"""The flow definition: the JSON document at the heart of Flowgate, as frozen dataclasses.

Parsing assumes the document already passed ``flows.validation.validate``; the engine works
on these objects, never on raw dicts. ``layout`` and ``samples`` are kept out of the parsed
form on purpose: they never change behaviour.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

TRIGGER_NODE_ID = "trigger"
# Keys of the document that do not change what a flow does (editor-only state). ``tests``
# (the analyst's sample tests, see flows.review) are shown to and checked by the reviewer,
# but they change what is checked, not what runs: editing them keeps the content hash.
NON_BEHAVIOURAL_KEYS = frozenset({"layout", "samples", "tests"})


@dataclass(frozen=True)
class RetryPolicy:
    """Per-destination retry policy; the defaults are what analysts see in the editor.

    A throttled answer (HTTP 429) is not a failure: it waits for the destination's
    Retry-After (uncapped by ``max_backoff_seconds``) and does not count toward
    ``max_attempts``; only ``max_age_seconds`` bounds it (``flows.engine``)."""

    max_attempts: int = 5
    backoff_seconds: float = 2.0
    max_backoff_seconds: float = 300.0
    # No retry is scheduled past this age of the message: it is dead-lettered instead. It
    # always has a value (the schema allows 1 s to 30 days), so throttling always ends.
    max_age_seconds: float = 86400.0

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> RetryPolicy:
        doc = doc or {}
        default = cls()
        return cls(
            max_attempts=int(doc.get("max_attempts", default.max_attempts)),
            backoff_seconds=float(doc.get("backoff_seconds", default.backoff_seconds)),
            max_backoff_seconds=float(doc.get("max_backoff_seconds", default.max_backoff_seconds)),
            max_age_seconds=float(doc.get("max_age_seconds", default.max_age_seconds)),
        )


@dataclass(frozen=True)
class TriggerSpec:
    type: str
    config: Mapping[str, Any] = field(default_factory=dict)


# A split step's items are run as separate messages; the steps below it record (and deliver
# under) their id suffixed with the item index, e.g. ``to_erp[2]`` (``[0][1]`` when nested).
ITEM_SUFFIX = re.compile(r"(\[\d+\])+$")
DEFAULT_MAX_ITEMS = 1000
OTHERWISE = "otherwise"  # the case name of a route's fallback branch (on edges)


def base_step_id(step_id: str) -> str:
    """``to_erp[2]`` -> ``to_erp``: the step of the definition a recorded execution is of."""
    return ITEM_SUFFIX.sub("", step_id)


@dataclass(frozen=True)
class RouteCase:
    name: str
    condition: str


@dataclass(frozen=True)
class Step:
    """One step. Only the fields of its ``type`` are meaningful."""

    id: str
    type: str  # "map" | "filter" | "deliver" | "route" | "split"
    expression: str | None = None
    condition: str | None = None
    connector: str | None = None
    connection_id: int | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Deliver only: the canonical schema (name, version) the input must match, or None.
    input_schema: tuple[str, int] | None = None
    # Route only: the ordered cases; "first" follows the first match, "all" every match;
    # ``otherwise`` enables the fallback branch taken when no case matches.
    cases: tuple[RouteCase, ...] = ()
    mode: str = "first"
    otherwise: bool = False
    # Split only (``expression`` gives the array): more items than this fail the run.
    max_items: int = DEFAULT_MAX_ITEMS


@dataclass(frozen=True)
class FlowDefinition:
    trigger: TriggerSpec
    steps: tuple[Step, ...]
    edges: tuple[tuple[str, str], ...]
    # The ``case`` of each edge (same order as ``edges``); None off route steps.
    edge_cases: tuple[str | None, ...] = ()

    def step(self, step_id: str) -> Step:
        """The step by id; an item-suffixed id (``to_erp[2]``) gives its step too."""
        for step in self.steps:
            if step.id == step_id:
                return step
        base = base_step_id(step_id)
        if base != step_id:
            return self.step(base)
        raise KeyError(step_id)

    def children(self, node_id: str) -> list[str]:
        """Targets of the edges leaving ``node_id``, in document order."""
        return [target for source, target in self.edges if source == node_id]

    def branches(self, node_id: str) -> list[tuple[str, str | None]]:
        """(target, case) of the edges leaving ``node_id``, in document order."""
        cases = self.edge_cases or (None,) * len(self.edges)
        return [
            (target, case)
            for (source, target), case in zip(self.edges, cases, strict=True)
            if source == node_id
        ]

    def destinations(self) -> list[Step]:
        return [step for step in self.steps if step.type == "deliver"]

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FlowDefinition:
        trigger = doc["trigger"]
        steps = tuple(
            Step(
                id=s["id"],
                type=s["type"],
                expression=s.get("expression"),
                condition=s.get("condition"),
                connector=s.get("connector"),
                connection_id=s.get("connection_id"),
                config=dict(s.get("config") or {}),
                retry=RetryPolicy.from_json(s.get("retry")),
                input_schema=_input_schema(s.get("input_schema")),
                cases=tuple(
                    RouteCase(name=c["name"], condition=c["condition"])
                    for c in s.get("cases") or ()
                ),
                mode=s.get("mode") or "first",
                otherwise=bool(s.get("otherwise", False)),
                max_items=int(s.get("max_items") or DEFAULT_MAX_ITEMS),
            )
            for s in doc["steps"]
        )
        edges = tuple((e["from"], e["to"]) for e in doc["edges"])
        return cls(
            trigger=TriggerSpec(type=trigger["type"], config=dict(trigger.get("config") or {})),
            steps=steps,
            edges=edges,
            edge_cases=tuple(e.get("case") for e in doc["edges"]),
        )


def _input_schema(doc: Mapping[str, Any] | None) -> tuple[str, int] | None:
    if not doc:
        return None
    return str(doc["name"]), int(doc["version"])


def behaviour_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The document without editor-only keys: what review and approval are about."""
    return {k: v for k, v in doc.items() if k not in NON_BEHAVIOURAL_KEYS}


def content_hash(doc: Mapping[str, Any]) -> str:
    """A stable SHA-256 of the behaviour of a document (layout moves do not change it)."""
    canonical = json.dumps(behaviour_of(doc), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_flow_schema() -> dict[str, Any]:
    """The JSON Schema of the document, shipped as package data."""
    text = resources.files("flows").joinpath("flow.schema.json").read_text(encoding="utf-8")
    return json.loads(text)
