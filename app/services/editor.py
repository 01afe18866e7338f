"""What the flow editor needs besides saving: test runs of a draft, sample payloads, and the
payloads of recent real runs to use as samples.

A test run executes the whole draft through ``flows.engine.FlowRunner`` in simulate mode:
map and filter steps run in the same sandboxed evaluator (same hard limits) as the mapping
preview and the workers; deliver steps send nothing and record exactly the message their
destination would receive. Nothing is written: no Run, no delivery, no audit event.

The draft need not be valid for submission (a half-finished flow is what people test), but
it must parse: a trigger, steps with ids and types, edges between known nodes, no cycle.

Secrets never leave in a response: every value of a secret of the connections the flow
refers to is masked wherever it appears, and so are the values of keys that name a
credential (``password``, ``api_key``, ``token``...).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any, cast

from sqlalchemy import select

from app import runtime
from app.errors import Invalid, NotFound
from app.extensions import db
from app.models import Connection, Flow, Run, VersionStatus
from app.schemas.editor import redact
from app.services.flows import get_flow, version_with_status
from connectors.redaction import Redactor
from flows.definition import TRIGGER_NODE_ID, FlowDefinition, base_step_id
from flows.engine import FlowRunner
from flows.mapping import MappingError
from flows.results import StepStatus
from flows.sandbox import MappingEvaluator

# A test run stops evaluating after this long in total (each evaluation also has the
# preview's own limit): a draft with many slow steps cannot hold a web thread for minutes.
TEST_RUN_BUDGET_SECONDS = 10.0
# Most step executions one test run may make (fan-out multiplies them).
MAX_STEP_EXECUTIONS = 200
STEP_TYPES = frozenset({"map", "filter", "deliver", "route", "split"})
_STATUS = {
    StepStatus.SUCCEEDED: "succeeded",
    StepStatus.SIMULATED: "succeeded",
    StepStatus.FILTERED: "filtered",
    StepStatus.SKIPPED: "skipped",
    StepStatus.FAILED: "failed",
    StepStatus.RETRYING: "failed",
}


# -- redaction -------------------------------------------------------------------------------


def _connection_ids(doc: Mapping[str, Any]) -> set[int]:
    ids = set()
    trigger_config = (doc.get("trigger") or {}).get("config") or {}
    candidates = [trigger_config.get("connection_id")]
    candidates += [s.get("connection_id") for s in doc.get("steps") or [] if isinstance(s, dict)]
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool):
            ids.add(value)
    return ids


def _connections(ids: Iterable[int]) -> dict[int, Connection]:
    ids = set(ids)
    if not ids:
        return {}
    rows = db.session.execute(select(Connection).where(Connection.id.in_(ids))).scalars()
    return {row.id: row for row in rows}


def _redactor(connections: Iterable[Connection]) -> Redactor:
    box = runtime.secret_box()
    values: list[str] = []
    for row in connections:
        try:
            secrets = box.decrypt(row.secrets_encrypted)
        except Exception:  # an undecryptable row has no value we could leak
            continue
        values += [str(v) for v in secrets.values() if isinstance(v, (str, int)) and str(v)]
    return Redactor(values)


# -- test run --------------------------------------------------------------------------------


def _problem(path: str, message: str) -> dict[str, str]:
    return {"path": path, "code": "unparseable", "message": message}


def parse_problems(doc: Any) -> list[dict[str, str]]:
    """Why ``doc`` cannot be run at all (empty: it can, even if it cannot be submitted)."""
    if not isinstance(doc, dict):
        return [_problem("", "the definition must be a JSON object")]
    problems = []
    trigger = doc.get("trigger")
    if not isinstance(trigger, dict) or not isinstance(trigger.get("type"), str):
        problems.append(_problem("/trigger", "a trigger with a type is required"))
    elif trigger.get("config") is not None and not isinstance(trigger["config"], dict):
        problems.append(_problem("/trigger/config", "config must be an object"))
    steps = doc.get("steps")
    edges = doc.get("edges")
    if not isinstance(steps, list):
        problems.append(_problem("/steps", "steps must be a list"))
        steps = []
    if not isinstance(edges, list):
        problems.append(_problem("/edges", "edges must be a list"))
        edges = []
    ids: set[str] = set()
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or not isinstance(step.get("id"), str) or not step["id"]:
            problems.append(_problem(f"/steps/{i}", "every step needs an id"))
            continue
        if step["id"] in ids or step["id"] == TRIGGER_NODE_ID:
            problems.append(_problem(f"/steps/{i}/id", f"step id '{step['id']}' is not unique"))
        ids.add(step["id"])
        problems += _step_problems(f"/steps/{i}", step)
    children, edge_problems = _edge_problems(edges, ids | {TRIGGER_NODE_ID})
    problems += edge_problems
    if not problems:
        problems += _walk_problems(children)
    return problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _step_problems(path: str, step: Mapping[str, Any]) -> list[dict[str, str]]:
    problems = []
    if step.get("type") not in STEP_TYPES:
        problems.append(
            _problem(f"{path}/type", "type must be map, filter, deliver, route or split")
        )
    if step.get("type") == "route":
        problems += _case_problems(path, step)
    if step.get("max_items") is not None and not _is_int(step["max_items"]):
        problems.append(_problem(f"{path}/max_items", "must be an integer"))
    for key in ("expression", "condition", "connector"):
        if step.get(key) is not None and not isinstance(step[key], str):
            problems.append(_problem(f"{path}/{key}", f"{key} must be a string"))
    if step.get("connection_id") is not None and not _is_int(step["connection_id"]):
        problems.append(_problem(f"{path}/connection_id", "must be an integer"))
    if step.get("config") is not None and not isinstance(step["config"], dict):
        problems.append(_problem(f"{path}/config", "config must be an object"))
    schema = step.get("input_schema")
    if schema and not (
        isinstance(schema, dict)
        and isinstance(schema.get("name"), str)
        and _is_int(schema.get("version"))
    ):
        problems.append(_problem(f"{path}/input_schema", "needs a name and a version"))
    retry = step.get("retry")
    if retry is not None and not (
        isinstance(retry, dict)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in retry.values())
    ):
        problems.append(_problem(f"{path}/retry", "retry must be an object of numbers"))
    return problems


def _case_problems(path: str, step: Mapping[str, Any]) -> list[dict[str, str]]:
    cases = step.get("cases")
    if not isinstance(cases, list):
        return [_problem(f"{path}/cases", "cases must be a list")]
    return [
        _problem(f"{path}/cases/{j}", "a case needs a name and a condition")
        for j, case in enumerate(cases)
        if not (
            isinstance(case, dict)
            and isinstance(case.get("name"), str)
            and isinstance(case.get("condition"), str)
        )
    ]


def _edge_problems(
    edges: list[Any], nodes: set[str]
) -> tuple[dict[str, list[str]], list[dict[str, str]]]:
    problems = []
    children: dict[str, list[str]] = {}
    for i, edge in enumerate(edges):
        if not isinstance(edge, dict):
            problems.append(_problem(f"/edges/{i}", "an edge must be an object"))
            continue
        known = True
        for end in ("from", "to"):
            if not isinstance(edge.get(end), str) or edge[end] not in nodes:
                problems.append(_problem(f"/edges/{i}/{end}", f"unknown node {edge.get(end)!r}"))
                known = False
        if known:
            children.setdefault(edge["from"], []).append(edge["to"])
    return children, problems


def _walk_problems(children: dict[str, list[str]]) -> list[dict[str, str]]:
    """A cycle, or more step executions than a test run allows (fan-out of fan-outs)."""
    executions: dict[str, int] = {}
    state: dict[str, str] = {}

    def count(node: str) -> int:  # executions of the subtree below node, node included
        if state.get(node) == "open":
            raise _Cycle(node)
        if node in executions:
            return executions[node]
        state[node] = "open"
        total = 1 + sum(count(child) for child in children.get(node, []))
        state[node] = "done"
        executions[node] = min(total, MAX_STEP_EXECUTIONS + 1)
        return executions[node]

    try:
        total = count(TRIGGER_NODE_ID) - 1
    except _Cycle as cycle:
        return [_problem("/edges", f"the edges form a cycle through '{cycle.node}'")]
    except RecursionError:
        return [_problem("/edges", "the flow is nested too deeply to run")]
    if total > MAX_STEP_EXECUTIONS:
        return [
            _problem("/edges", f"a test run would execute more than {MAX_STEP_EXECUTIONS} steps")
        ]
    return []


class _Cycle(Exception):
    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.node = node


class _BudgetedEvaluator:
    """The sandboxed evaluator with a total time budget over one test run."""

    def __init__(self, inner: MappingEvaluator, budget_seconds: float) -> None:
        self.inner = inner
        self.deadline = time.monotonic() + budget_seconds
        self.budget_seconds = budget_seconds

    def _check(self) -> None:
        if time.monotonic() > self.deadline:
            raise MappingError(
                "resource_limit",
                f"the test run used up its {self.budget_seconds:g} s budget; this step was"
                " not evaluated",
            )

    def evaluate(self, expression: str, data: Any, *, bindings: Any = None) -> Any:
        self._check()
        return self.inner.evaluate(expression, data, bindings=bindings)

    def evaluate_condition(self, expression: str, data: Any) -> bool:
        self._check()
        return self.inner.evaluate_condition(expression, data)


def line_column(text: str, position: int | None) -> tuple[int, int] | None:
    """1-based line and column of a JSONata error position (the offset just past the
    offending token, as the library reports it)."""
    if position is None or not isinstance(text, str):
        return None
    offset = max(0, min(position, len(text)))
    before = text[:offset]
    line = before.count("\n") + 1
    column = offset - (before.rfind("\n") + 1)
    return line, column


def _step_error(step: Mapping[str, Any], error: Mapping[str, Any] | None) -> Any:
    if error is None:
        return None
    result = dict(error)
    if step.get("type") in ("map", "split"):
        text = step.get("expression")
    elif step.get("type") == "route":
        named = [c for c in step.get("cases") or [] if c.get("name") == result.get("case")]
        text = named[0].get("condition") if named else None
    else:
        text = step.get("condition")
    where = line_column(text or "", result.get("position"))
    if where is not None:
        result["line"], result["column"] = where
    return result


def _draft_document(flow: Flow) -> dict[str, Any]:
    version = version_with_status(flow, VersionStatus.DRAFT) or version_with_status(
        flow, VersionStatus.LIVE
    )
    if version is None:
        raise Invalid(f"flow {flow.id} has no draft or live version to run; send a definition")
    return dict(version.definition or {})


def _pick_sample(doc: Mapping[str, Any], sample: Any, index: int | None) -> Any:
    samples = doc.get("samples") if isinstance(doc.get("samples"), list) else []
    if sample is not None:
        return sample
    if index is not None:
        if index >= len(samples):
            raise Invalid(
                f"the definition has {len(samples)} sample(s); there is no sample {index}",
                problems=[_problem("/sample_index", "no such sample")],
            )
        return samples[index]
    if samples:
        return samples[0]
    raise Invalid(
        "nothing to run: send a sample, or pin one to the flow (definition.samples)",
        problems=[_problem("/sample", "a sample is required")],
    )


def _target(step: Mapping[str, Any], connection: Connection | None) -> str | None:
    config = step.get("config") or {}
    if step.get("connector") == "http" and connection is not None:
        base = str((connection.config or {}).get("base_url") or "").rstrip("/")
        path = str(config.get("path") or "/")
        return f"{config.get('method') or 'POST'} {base}/{path.lstrip('/')}"
    return None


def test_run(
    flow_id: int, definition: dict[str, Any] | None, sample: Any, sample_index: int | None
) -> dict[str, Any]:
    """Run a draft on one sample with simulated destinations; see the module docstring."""
    flow = get_flow(flow_id)
    doc = definition if definition is not None else _draft_document(flow)
    problems = parse_problems(doc)
    if problems:
        raise Invalid(
            "the draft cannot be run: "
            + "; ".join(f"{p['path']}: {p['message']}" for p in problems),
            problems=problems,
        )
    message = _pick_sample(doc, sample, sample_index)
    parsed = FlowDefinition.from_json(doc)
    evaluator = _BudgetedEvaluator(runtime.mapping_evaluator(), TEST_RUN_BUDGET_SECONDS)
    # A simulating runner never touches the registry, connections, ledger or HTTP.
    runner = FlowRunner(
        registry=cast(Any, None),
        connections=cast(Any, None),
        deliveries=None,
        http=None,
        key_prefix="test",
        simulate=True,
        evaluator=evaluator,
    )
    started = time.perf_counter()
    result = runner.run(0, parsed, message)
    elapsed = round((time.perf_counter() - started) * 1000, 3)

    connections = _connections(_connection_ids(doc))
    redactor = _redactor(connections.values())
    by_id = {s["id"]: s for s in doc["steps"]}
    steps = []
    deliveries = []
    for s in result.steps:
        raw = by_id[base_step_id(s.step_id)]  # ``to_erp[2]``: item 2 of a split
        steps.append(
            {
                "id": s.step_id,
                "type": raw.get("type"),
                "status": _STATUS.get(s.status, str(s.status)),
                "input": redact(s.input, redactor),
                "output": redact(s.output, redactor),
                "duration_ms": s.duration_ms,
                "error": redact(_step_error(raw, s.error), redactor),
            }
        )
        if s.status == StepStatus.SIMULATED:
            connection = connections.get(raw.get("connection_id"))  # type: ignore[arg-type]
            deliveries.append(
                {
                    "step": s.step_id,
                    "connector": raw.get("connector"),
                    "connection_id": raw.get("connection_id"),
                    "connection": connection.name if connection is not None else None,
                    "target": _target(raw, connection),
                    "would_send": redact(s.output, redactor),
                }
            )
    ran = {base_step_id(s.step_id) for s in result.steps}
    for raw in doc["steps"]:
        if raw["id"] not in ran:  # behind a filter that said no, a failure, or unconnected
            steps.append(
                {
                    "id": raw["id"],
                    "type": raw.get("type"),
                    "status": "skipped",
                    "input": None,
                    "output": None,
                    "duration_ms": 0.0,
                    "error": None,
                }
            )
    return {
        "ok": not any(step["status"] == "failed" for step in steps),
        "status": str(result.status),
        "reason": redactor(result.reason) if result.reason else None,
        "duration_ms": elapsed,
        "steps": steps,
        "deliveries": deliveries,
    }


# -- samples ---------------------------------------------------------------------------------

_SAMPLES = {
    # name: (title, business object)
    "commerce-order-created": ("Web-shop order (3 lines)", "order"),
    "commerce-order-created-20-lines": ("Web-shop order (20 lines)", "order"),
    "crm-customer-updated": ("CRM customer updated", "customer"),
    "pim-product-updated": ("PIM product updated", "product"),
    "wms-inventory-levels": ("WMS inventory levels", "stock"),
    "wms-shipment-dispatched": ("WMS shipment dispatched", "shipment"),
}


def _sample_text(name: str) -> str:
    if name not in _SAMPLES:
        raise NotFound(f"no sample named '{name}'")
    return resources.files("app.demo").joinpath("samples", f"{name}.json").read_text("utf-8")


def _sample_info(name: str, text: str) -> dict[str, Any]:
    title, business_object = _SAMPLES[name]
    return {
        "name": name,
        "title": title,
        "business_object": business_object,
        "size_bytes": len(text.encode("utf-8")),
    }


def list_samples() -> list[dict[str, Any]]:
    """The retail sample payloads shipped with Flowgate."""
    return [_sample_info(name, _sample_text(name)) for name in _SAMPLES]


def get_sample(name: str) -> dict[str, Any]:
    text = _sample_text(name)
    return {**_sample_info(name, text), "payload": json.loads(text)}


def recent_payloads(flow_id: int, limit: int) -> list[dict[str, Any]]:
    """The input payloads of the flow's latest runs (newest first), secrets masked."""
    flow = get_flow(flow_id)
    rows = list(
        db.session.execute(
            select(Run).where(Run.flow_id == flow.id).order_by(Run.id.desc()).limit(limit)
        ).scalars()
    )
    ids: set[int] = set()
    for version in flow.versions:
        ids |= _connection_ids(version.definition or {})
    redactor = _redactor(_connections(ids).values())
    return [
        {
            "run_id": row.id,
            "status": row.status,
            "business_key": row.business_key,
            "received_at": row.received_at,
            "flow_version": row.version.number,
            "payload": redact(row.payload, redactor),
        }
        for row in rows
    ]
