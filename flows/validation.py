"""Validate a flow document and report *every* problem with a JSON-pointer path.

Checks, in order: the JSON Schema; step ids and edges (unique ids, dangling edges, cycles,
steps reachable from the trigger along exactly one path, route case labels on edges); at
least one destination; JSONata syntax (with the position inside the expression); connectors,
connections and their config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator

from connectors.base import ConnectorError
from connectors.config import config_problems
from connectors.registry import ConnectorRegistry
from flows import canonical, mapping
from flows.definition import DEFAULT_MAX_ITEMS, OTHERWISE, TRIGGER_NODE_ID, load_flow_schema

# Given a connection id, the connector key of that stored connection, or None if unknown.
ConnectionLookup = Callable[[int], "str | None"]


# Step executions are recorded (and delivered) under ids of at most this many characters.
MAX_RECORDED_ID = 64


@dataclass(frozen=True)
class Problem:
    path: str
    code: str
    message: str
    position: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["position"] is None:
            del data["position"]
        return data


@lru_cache(maxsize=1)
def _schema_validator() -> Draft202012Validator:
    return Draft202012Validator(load_flow_schema())


def _pointer(parts: Any) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def validate(
    doc: Any, registry: ConnectorRegistry, connection_lookup: ConnectionLookup
) -> list[Problem]:
    """Return all problems of ``doc``; an empty list means it can be saved and submitted."""
    schema_errors = sorted(_schema_validator().iter_errors(doc), key=lambda e: list(e.path))
    if schema_errors:
        # Structural errors make the graph checks meaningless; report them all and stop.
        return [
            Problem(path=_pointer(e.absolute_path), code="schema", message=e.message)
            for e in schema_errors
        ]
    problems = _graph_problems(doc)
    problems += _expression_problems(doc)
    problems += _connector_problems(doc, registry, connection_lookup)
    return problems


def _graph_problems(doc: Mapping[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    index_of: dict[str, int] = {}
    for i, step in enumerate(doc["steps"]):
        if step["id"] == TRIGGER_NODE_ID or step["id"] in index_of:
            problems.append(
                Problem(f"/steps/{i}/id", "duplicate_id", f"step id '{step['id']}' is not unique")
            )
        else:
            index_of[step["id"]] = i

    parents: dict[str, list[str]] = {}
    for i, edge in enumerate(doc["edges"]):
        for end in ("from", "to"):
            node = edge[end]
            if node != TRIGGER_NODE_ID and node not in index_of:
                problems.append(
                    Problem(f"/edges/{i}/{end}", "dangling_edge", f"no step with id '{node}'")
                )
        if edge["to"] == TRIGGER_NODE_ID:
            problems.append(
                Problem(f"/edges/{i}/to", "edge_into_trigger", "nothing can flow into the trigger")
            )
        parents.setdefault(edge["to"], []).append(edge["from"])

    for step_id, step_parents in parents.items():
        if step_id in index_of and len(step_parents) > 1:
            problems.append(
                Problem(
                    f"/steps/{index_of[step_id]}",
                    "multiple_inputs",
                    f"step '{step_id}' has {len(step_parents)} incoming edges; a step takes one",
                )
            )
    problems += _cycle_and_reach_problems(doc, index_of)
    problems += _route_problems(doc, index_of)
    if not any(p.code == "cycle" for p in problems):
        problems += _item_id_problems(doc, index_of)
    if not any(step["type"] == "deliver" for step in doc["steps"]):
        problems.append(Problem("/steps", "no_destination", "the flow delivers nowhere"))
    return problems


def _route_problems(doc: Mapping[str, Any], index_of: dict[str, int]) -> list[Problem]:
    """Case labels: every edge out of a route names one of its cases (or 'otherwise' when
    enabled), each case has at most one edge, and edges out of other nodes carry none."""
    problems: list[Problem] = []
    steps = doc["steps"]
    for i, step in enumerate(steps):
        if step["type"] != "route":
            continue
        seen: set[str] = set()
        for j, case in enumerate(step["cases"]):
            if case["name"] == OTHERWISE:
                problems.append(
                    Problem(
                        f"/steps/{i}/cases/{j}/name",
                        "reserved_case_name",
                        f"'{OTHERWISE}' is the fallback branch; name the case differently",
                    )
                )
            elif case["name"] in seen:
                problems.append(
                    Problem(
                        f"/steps/{i}/cases/{j}/name",
                        "duplicate_case",
                        f"case name '{case['name']}' is used twice in step '{step['id']}'",
                    )
                )
            seen.add(case["name"])
    return problems + _case_edge_problems(doc, index_of)


def _case_edge_problems(doc: Mapping[str, Any], index_of: dict[str, int]) -> list[Problem]:
    problems: list[Problem] = []
    steps = doc["steps"]
    used: dict[tuple[str, str], int] = {}
    for k, edge in enumerate(doc["edges"]):
        source, case = edge["from"], edge.get("case")
        step = steps[index_of[source]] if source in index_of else None
        if step is None or step["type"] != "route":
            if case is not None:
                problems.append(
                    Problem(
                        f"/edges/{k}/case",
                        "unexpected_case",
                        f"only edges leaving a route step name a case ('{source}' is no route)",
                    )
                )
            continue
        names = {c["name"] for c in step["cases"]}
        if case is None:
            problems.append(
                Problem(
                    f"/edges/{k}",
                    "missing_case",
                    f"an edge leaving route '{source}' must name the case it is for",
                )
            )
        elif case == OTHERWISE and not step.get("otherwise", False):
            problems.append(
                Problem(
                    f"/edges/{k}/case",
                    "unknown_case",
                    f"route '{source}' has no otherwise branch (enable 'otherwise')",
                )
            )
        elif case != OTHERWISE and case not in names:
            problems.append(
                Problem(
                    f"/edges/{k}/case", "unknown_case", f"route '{source}' has no case '{case}'"
                )
            )
        elif (source, case) in used:
            problems.append(
                Problem(
                    f"/edges/{k}/case",
                    "duplicate_case_edge",
                    f"case '{case}' of route '{source}' already leads to "
                    f"'{doc['edges'][used[(source, case)]]['to']}'; a case has one branch",
                )
            )
        else:
            used[(source, case)] = k
    return problems


def _item_id_problems(doc: Mapping[str, Any], index_of: dict[str, int]) -> list[Problem]:
    """Below a split, executions are recorded as ``<id>[<item>]``: that must fit 64 chars."""
    children = _children(doc)
    extra: dict[str, int] = {}
    frontier = [(TRIGGER_NODE_ID, 0)]
    while frontier:
        node, suffix = frontier.pop()
        if node in index_of and doc["steps"][index_of[node]]["type"] == "split":
            max_items = doc["steps"][index_of[node]].get("max_items", DEFAULT_MAX_ITEMS)
            suffix += len(str(max(max_items - 1, 0))) + 2
        for child in children.get(node, []):
            if child in index_of and extra.get(child, -1) < suffix:
                extra[child] = suffix
                frontier.append((child, suffix))
    return [
        Problem(
            f"/steps/{index_of[step_id]}/id",
            "id_too_long",
            f"step '{step_id}' runs once per split item and is recorded as "
            f"'{step_id}[…]': shorten its id to at most {MAX_RECORDED_ID - suffix} characters",
        )
        for step_id, suffix in extra.items()
        if suffix and len(step_id) + suffix > MAX_RECORDED_ID
    ]


def _children(doc: Mapping[str, Any]) -> dict[str, list[str]]:
    children: dict[str, list[str]] = {}
    for edge in doc["edges"]:
        children.setdefault(edge["from"], []).append(edge["to"])
    return children


def _cycle_and_reach_problems(doc: Mapping[str, Any], index_of: dict[str, int]) -> list[Problem]:
    children = _children(doc)
    problems = [
        Problem(
            f"/steps/{index_of[node]}" if node in index_of else "/edges",
            "cycle",
            f"edges form a cycle through '{node}'",
        )
        for node in _back_edge_targets(children, [TRIGGER_NODE_ID, *index_of])
    ]
    reachable = _reachable(children, TRIGGER_NODE_ID)
    problems += [
        Problem(f"/steps/{i}", "unreachable", f"step '{step_id}' is not connected to the trigger")
        for step_id, i in index_of.items()
        if step_id not in reachable
    ]
    return problems


def _back_edge_targets(children: dict[str, list[str]], roots: list[str]) -> list[str]:
    """Nodes closing a cycle, found by an iterative DFS (grey = on the current path)."""
    found: list[str] = []
    colour: dict[str, str] = {}
    for root in roots:
        if root in colour:
            continue
        stack = [(root, iter(children.get(root, [])))]
        colour[root] = "grey"
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = "black"
                stack.pop()
            elif colour.get(nxt) == "grey":
                found.append(nxt)
            elif nxt not in colour:
                colour[nxt] = "grey"
                stack.append((nxt, iter(children.get(nxt, []))))
    return found


def _reachable(children: dict[str, list[str]], start: str) -> set[str]:
    reachable: set[str] = set()
    frontier = [start]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in reachable:
                reachable.add(child)
                frontier.append(child)
    return reachable


# Poll triggers' JSONata fields (connectors/poll_http.py), otherwise only met at poll time.
_POLL_EXPRESSIONS: dict[str, tuple[str, ...]] = {"poll_http": ("items", "next_cursor", "id")}


def _expression_problems(doc: Mapping[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    for i, step in enumerate(doc["steps"]):
        if step["type"] == "route":
            located = [
                (f"/steps/{i}/cases/{j}/condition", case["condition"])
                for j, case in enumerate(step["cases"])
            ]
        else:
            field = {"map": "expression", "filter": "condition", "split": "expression"}.get(
                step["type"]
            )
            if field is None:
                continue
            located = [(f"/steps/{i}/{field}", step[field])]
        for path, expression in located:
            error = mapping.check_expression(expression)
            if error is not None:
                problems.append(
                    Problem(
                        path,
                        "invalid_expression",
                        f"{error.code}: {error.message}",
                        position=error.position,
                    )
                )
    trigger_config = doc["trigger"].get("config") or {}
    polled = _POLL_EXPRESSIONS.get(str(doc["trigger"].get("type")), ())
    for field in ("business_key", "event_id_expression", *polled):
        expression = trigger_config.get(field)
        if not isinstance(expression, str) or not expression:
            continue
        error = mapping.check_expression(expression)
        if error is not None:
            problems.append(
                Problem(
                    f"/trigger/config/{field}",
                    "invalid_expression",
                    f"{error.code}: {error.message}",
                    position=error.position,
                )
            )
    return problems


def _connector_problems(
    doc: Mapping[str, Any], registry: ConnectorRegistry, connection_lookup: ConnectionLookup
) -> list[Problem]:
    problems = _trigger_problems(doc["trigger"], registry, connection_lookup)
    for i, step in enumerate(doc["steps"]):
        if step["type"] != "deliver":
            continue
        base = f"/steps/{i}"
        problems += _input_schema_problems(base, step.get("input_schema"))
        found = _one_connector(
            base, step["connector"], "destination", step.get("config") or {}, registry
        )
        problems += found
        if any(p.code == "unknown_connector" for p in found):
            continue
        spec = registry.spec(step["connector"])
        connection_id = step.get("connection_id")
        if connection_id is None:
            if spec.requires_connection:
                problems.append(
                    Problem(f"{base}/connection_id", "missing_connection", "choose a connection")
                )
            continue
        problems += _connection_problems(base, connection_id, spec.key, connection_lookup)
    return problems


def _input_schema_problems(base: str, declared: Mapping[str, Any] | None) -> list[Problem]:
    if not declared:
        return []
    name, version = declared["name"], declared["version"]
    if not canonical.exists(name):
        return [Problem(f"{base}/input_schema", "unknown_schema", f"no canonical schema '{name}'")]
    if not canonical.exists(name, version):
        return [
            Problem(
                f"{base}/input_schema/version",
                "unknown_schema",
                f"canonical schema '{name}' has no version {version}",
            )
        ]
    return []


def _trigger_problems(
    trigger: Mapping[str, Any], registry: ConnectorRegistry, connection_lookup: ConnectionLookup
) -> list[Problem]:
    """The trigger's config, and its connection: required when it verifies signatures."""
    config = trigger.get("config") or {}
    problems = _one_connector("/trigger", trigger["type"], "trigger", config, registry)
    if any(p.code == "unknown_connector" for p in problems):
        return problems
    connection_id = trigger.get("connection_id")
    if connection_id is not None:
        key = registry.spec(trigger["type"]).key
        return problems + _connection_problems("/trigger", connection_id, key, connection_lookup)
    signature = config.get("signature")
    scheme = signature.get("scheme") if isinstance(signature, Mapping) else None
    if scheme not in (None, "none"):
        problems.append(
            Problem(
                "/trigger/connection_id",
                "missing_connection",
                f"signature scheme '{scheme}' needs a connection holding the signing secret",
            )
        )
    return problems


def _connection_problems(
    base: str, connection_id: int, connector_key: str, connection_lookup: ConnectionLookup
) -> list[Problem]:
    stored_key = connection_lookup(connection_id)
    if stored_key is None:
        return [
            Problem(
                f"{base}/connection_id",
                "unknown_connection",
                f"connection {connection_id} does not exist",
            )
        ]
    if stored_key != connector_key:
        return [
            Problem(
                f"{base}/connection_id",
                "connection_mismatch",
                f"connection {connection_id} is a '{stored_key}' connection, not '{connector_key}'",
            )
        ]
    return []


def _one_connector(
    base: str, key: str, kind: str, config: Mapping[str, Any], registry: ConnectorRegistry
) -> list[Problem]:
    field = "type" if kind == "trigger" else "connector"
    try:
        spec = registry.spec(key)
    except ConnectorError:
        return [Problem(f"{base}/{field}", "unknown_connector", f"no connector '{key}'")]
    if spec.kind != kind:
        return [Problem(f"{base}/{field}", "unknown_connector", f"'{key}' is not a {kind}")]
    found = config_problems(spec.step_schema, dict(config))
    # Checks JSON Schema cannot express (a cron expression, a time zone), declared by the
    # connector class as a static ``semantic_problems(config) -> [(pointer, message)]``.
    extra = getattr(registry.get(key), "semantic_problems", None)
    if callable(extra) and not found:
        found = extra(dict(config))
    return [Problem(f"{base}/config{path}", "invalid_config", message) for path, message in found]
