"""What the reviewer of a flow version sees: semantic diff, guardrails, sample tests, dry run.

Pure functions over flow documents (no Flask, no SQLAlchemy): the web layer looks up what
they need (the live version's document, connection configs, the flow's owner, the egress
policy, a sandboxed evaluator) and passes it in.

* ``semantic_diff`` compares behaviour only: ``layout`` and ``samples`` never show up as
  changes (``tests`` are compared on their own, they are part of what is reviewed).
* ``run_sample_tests`` runs the analyst's ``tests`` (input → expected output of one map step).
* ``dry_run`` runs the whole flow on every sample with simulated destinations.
* ``guardrails`` are design-time checks, each ``pass``, ``warn`` or ``fail``; a ``fail``
  blocks approval (``blocking``).
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from connectors.egress import EgressPolicy
from flows.definition import FlowDefinition, RetryPolicy, base_step_id
from flows.engine import FlowRunner
from flows.mapping import MappingError
from flows.results import StepStatus
from flows.sandbox import MappingEvaluator

PASS, WARN, FAIL = "pass", "warn", "fail"
# A map or filter taking longer than this on one sample fails the "expensive" guardrail.
EXPRESSION_TIME_BUDGET_MS = 250.0
_RESOURCE_LIMIT = "resource_limit"
_EXPRESSION_FIELDS = ("expression", "condition")


@dataclass(frozen=True)
class Guardrail:
    id: str
    status: str  # pass | warn | fail
    message: str
    step: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- semantic diff ---------------------------------------------------------------------------


def _text_diff(old: str | None, new: str | None, name: str) -> str:
    lines = difflib.unified_diff(
        (old or "").splitlines(),
        (new or "").splitlines(),
        fromfile=f"live/{name}",
        tofile=f"proposed/{name}",
        lineterm="",
    )
    return "\n".join(lines)


def _step_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = []
    for key in sorted((set(old) | set(new)) - {"id", "config"}):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        change: dict[str, Any] = {"field": key, "old": before, "new": after}
        if key in _EXPRESSION_FIELDS:
            change["diff"] = _text_diff(before, after, f"{new.get('id')}.{key}")
        if key == "retry":
            old_policy = asdict(RetryPolicy.from_json(before))
            new_policy = asdict(RetryPolicy.from_json(after))
            change["effective"] = {
                k: {"old": old_policy[k], "new": new_policy[k]}
                for k in old_policy
                if old_policy[k] != new_policy[k]
            }
        changes.append(change)
    old_config, new_config = old.get("config") or {}, new.get("config") or {}
    for key in sorted(set(old_config) | set(new_config)):
        if old_config.get(key) != new_config.get(key):
            changes.append(
                {"field": f"config.{key}", "old": old_config.get(key), "new": new_config.get(key)}
            )
    return changes


def _edges(doc: Mapping[str, Any] | None) -> list[tuple[str, str, str | None]]:
    return [(e["from"], e["to"], e.get("case")) for e in (doc or {}).get("edges", [])]


def _edge_view(edge: tuple[str, str, str | None]) -> dict[str, str]:
    view = {"from": edge[0], "to": edge[1]}
    if edge[2] is not None:
        view["case"] = edge[2]  # the route case this branch is for
    return view


def semantic_diff(old_doc: Mapping[str, Any] | None, new_doc: Mapping[str, Any]) -> dict[str, Any]:
    """What ``new_doc`` changes in behaviour against ``old_doc`` (None: a first version).

    Steps are matched by id (ids are stable across versions). Layout and samples are never
    compared; sample tests are listed separately under ``tests``.
    """
    old_trigger = (old_doc or {}).get("trigger")
    new_trigger = new_doc.get("trigger")
    trigger_changes = []
    if old_doc is None or old_trigger != new_trigger:
        old_t, new_t = old_trigger or {}, new_trigger or {}
        for key in sorted((set(old_t) | set(new_t)) - {"config"}):
            if old_t.get(key) != new_t.get(key):
                trigger_changes.append({"field": key, "old": old_t.get(key), "new": new_t.get(key)})
        old_c, new_c = old_t.get("config") or {}, new_t.get("config") or {}
        for key in sorted(set(old_c) | set(new_c)):
            if old_c.get(key) != new_c.get(key):
                trigger_changes.append(
                    {"field": f"config.{key}", "old": old_c.get(key), "new": new_c.get(key)}
                )

    old_steps = {s["id"]: s for s in (old_doc or {}).get("steps", [])}
    new_steps = {s["id"]: s for s in new_doc.get("steps", [])}
    added = [new_steps[i] for i in new_steps if i not in old_steps]
    removed = [old_steps[i] for i in old_steps if i not in new_steps]
    changed = []
    for step_id, step in new_steps.items():
        if step_id in old_steps:
            changes = _step_changes(old_steps[step_id], step)
            if changes:
                changed.append({"id": step_id, "type": step.get("type"), "changes": changes})

    old_edges, new_edges = _edges(old_doc), _edges(new_doc)
    edges = {
        "added": [_edge_view(e) for e in new_edges if e not in old_edges],
        "removed": [_edge_view(e) for e in old_edges if e not in new_edges],
    }

    old_tests = {t.get("name"): t for t in (old_doc or {}).get("tests", [])}
    new_tests = {t.get("name"): t for t in new_doc.get("tests", [])}
    tests = {
        "added": [n for n in new_tests if n not in old_tests],
        "removed": [n for n in old_tests if n not in new_tests],
        "changed": [n for n in new_tests if n in old_tests and new_tests[n] != old_tests[n]],
    }
    trigger = {"changed": bool(trigger_changes), "changes": trigger_changes}
    steps = {"added": added, "removed": removed, "changed": changed}
    unchanged = not (
        trigger_changes or added or removed or changed or edges["added"] or edges["removed"]
    )
    return {
        "first_version": old_doc is None,
        "unchanged": unchanged,
        "trigger": trigger,
        "steps": steps,
        "edges": edges,
        "tests": tests,
    }


# -- sample tests ----------------------------------------------------------------------------


def json_equal(a: Any, b: Any) -> bool:
    """Deep equality with JSON semantics: 1 == 1.0, but true != 1 and order matters in lists."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _error(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, MappingError):
        return exc.to_dict()
    return {"code": "error", "message": f"{exc.__class__.__name__}: {exc}"}


def run_sample_tests(doc: Mapping[str, Any], evaluator: MappingEvaluator) -> list[dict[str, Any]]:
    """Run every sample test of ``doc``: the step's expression on ``input`` must give
    ``expected`` (deep JSON equality). One result per test: pass or fail, with the actual
    output or the evaluation error."""
    steps = {s.get("id"): s for s in doc.get("steps", [])}
    results = []
    for test in doc.get("tests", []):
        result: dict[str, Any] = {
            "name": test.get("name"),
            "step": test.get("step"),
            "expected": test.get("expected"),
            "status": FAIL,
            "actual": None,
            "error": None,
        }
        step = steps.get(test.get("step"))
        if step is None or step.get("type") != "map":
            result["error"] = {
                "code": "no_such_step",
                "message": f"the flow has no map step '{test.get('step')}'",
            }
        else:
            try:
                actual = evaluator.evaluate(step.get("expression") or "", test.get("input"))
            except Exception as exc:  # every failure is a test result, never a crash
                result["error"] = _error(exc)
            else:
                result["actual"] = actual
                result["status"] = PASS if json_equal(actual, test.get("expected")) else FAIL
        results.append(result)
    return results


# -- dry run ---------------------------------------------------------------------------------


def dry_run(doc: Mapping[str, Any], evaluator: MappingEvaluator) -> list[dict[str, Any]]:
    """Run the whole flow on each sample with simulated destinations: nothing is sent, each
    destination records the message it would receive."""
    definition = FlowDefinition.from_json(doc)
    # A simulating runner never touches the registry, connections, ledger or HTTP.
    runner = FlowRunner(
        registry=cast(Any, None),
        connections=cast(Any, None),
        deliveries=None,
        http=None,
        key_prefix="review",
        simulate=True,
        evaluator=evaluator,
    )
    runs = []
    for index, sample in enumerate(doc.get("samples") or []):
        result = runner.run(0, definition, sample)
        steps = [
            {
                "step_id": s.step_id,
                "status": str(s.status),
                "output": s.output,
                "error": s.error,
                "duration_ms": s.duration_ms,
            }
            for s in result.steps
        ]
        destinations = []
        for s in result.steps:
            if s.status == StepStatus.SIMULATED:
                step = definition.step(s.step_id)
                destinations.append(
                    {
                        "step_id": s.step_id,  # ``to_erp[2]`` below a split
                        "connector": step.connector,
                        "connection_id": step.connection_id,
                        "config": dict(step.config),
                        "message": s.output,
                    }
                )
        runs.append(
            {
                "sample": index,
                "status": str(result.status),
                "reason": result.reason,
                "steps": steps,
                "destinations": destinations,
            }
        )
    return runs


# -- guardrails ------------------------------------------------------------------------------


def connection_host(config: Mapping[str, Any]) -> str | None:
    """The network host a connection reaches: the host of an http ``base_url``, else the
    ``host`` field (sql, amqp, smtp, sftp, redis); None for local ones (files, sqlite)."""
    base_url = config.get("base_url")
    if isinstance(base_url, str) and base_url:
        return urlsplit(base_url).hostname
    host = config.get("host")
    return str(host) if host else None


def _literal_addresses(host: str) -> list[str] | None:
    """The addresses of an IP literal or of ``localhost``; None for any other name.

    Other names are deliberately not resolved here: review must not do DNS lookups of
    names the analyst typed (and DNS can change); every delivery resolves and checks them
    again through the egress guard.
    """
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return ["127.0.0.1", "::1"]
    try:
        return [str(ipaddress.ip_address(name.split("%")[0]))]
    except ValueError:
        return None


def _retry_guardrails(doc: Mapping[str, Any]) -> list[Guardrail]:
    out = []
    default = RetryPolicy()
    for step in doc.get("steps", []):
        if step.get("type") != "deliver":
            continue
        retry = step.get("retry")
        if retry is None:
            out.append(
                Guardrail(
                    "retry_policy",
                    WARN,
                    f"no retry policy: defaults apply: {default.max_attempts} attempts, backoff"
                    f" from {default.backoff_seconds:g} s up to {default.max_backoff_seconds:g} s,"
                    f" dead-lettered after {default.max_age_seconds / 3600:g} h",
                    step["id"],
                )
            )
        elif RetryPolicy.from_json(retry).max_attempts == 1:
            out.append(
                Guardrail(
                    "retry_policy",
                    WARN,
                    "a single attempt: any transient failure dead-letters the message",
                    step["id"],
                )
            )
        else:
            policy = RetryPolicy.from_json(retry)
            out.append(
                Guardrail(
                    "retry_policy",
                    PASS,
                    f"{policy.max_attempts} attempts, backoff from {policy.backoff_seconds:g} s"
                    f" up to {policy.max_backoff_seconds:g} s",
                    step["id"],
                )
            )
    return out


# Labels of ``ConnectorSpec.idempotency`` as the reviewer reads them.
IDEMPOTENCY_LABELS = {"key": "by key", "upsert": "by upsert", "none": "none"}


def destination_idempotency(
    doc: Mapping[str, Any], declared: Mapping[str, str]
) -> list[dict[str, Any]]:
    """How each deliver step avoids duplicates when a delivery is retried.

    ``declared`` maps a connector key to its spec's ``idempotency`` ("key", "upsert",
    "none"). An ``sql`` step is idempotent by upsert only in upsert mode (on its
    ``key_columns``); in insert mode it is "none" unless the step names the table's unique
    key columns (a repeated insert is then refused by the table, not applied twice).
    """
    out = []
    for step in doc.get("steps", []):
        if step.get("type") != "deliver":
            continue
        connector = str(step.get("connector") or "")
        kind = declared.get(connector, "none")
        config = step.get("config") or {}
        keys = [str(k) for k in config.get("key_columns") or []]
        label = IDEMPOTENCY_LABELS.get(kind, "none")
        if kind == "upsert":
            if config.get("mode", "insert") == "upsert" and keys:
                label = "by upsert on " + ", ".join(keys)
            elif keys:
                label = "by the table's unique key " + ", ".join(keys) + " (insert)"
            else:
                kind, label = "none", "none (plain insert without a natural key)"
        out.append(
            {
                "step": step.get("id"),
                "connector": connector,
                "idempotency": kind,
                "label": label,
                "max_attempts": RetryPolicy.from_json(step.get("retry")).max_attempts,
            }
        )
    return out


def _idempotency_guardrails(doc: Mapping[str, Any], declared: Mapping[str, str]) -> list[Guardrail]:
    out = []
    for entry in destination_idempotency(doc, declared):
        step_id, attempts = entry["step"], entry["max_attempts"]
        if entry["idempotency"] != "none":
            out.append(
                Guardrail("idempotency", PASS, f"retries are safe: {entry['label']}", step_id)
            )
        elif declared.get(entry["connector"]) == "upsert":
            out.append(
                Guardrail(
                    "idempotency",
                    WARN,
                    f"'{entry['connector']}' in plain insert mode without a natural key: a retry"
                    " after an ambiguous failure may insert the rows twice; use upsert mode with"
                    " key_columns",
                    step_id,
                )
            )
        elif attempts > 1:
            out.append(
                Guardrail(
                    "idempotency",
                    WARN,
                    f"'{entry['connector']}' is not idempotent and may be attempted {attempts}"
                    " times: a retry after an ambiguous failure may send twice (ambiguous"
                    " failures are dead-lettered as ambiguous_delivery; clear failures retry)",
                    step_id,
                )
            )
        else:
            out.append(
                Guardrail(
                    "idempotency",
                    PASS,
                    f"'{entry['connector']}' is not idempotent; a single attempt, never resent",
                    step_id,
                )
            )
    return out


def _egress_guardrails(
    doc: Mapping[str, Any],
    connections: Mapping[int, Mapping[str, Any]],
    egress: EgressPolicy | None,
) -> list[Guardrail]:
    out = []
    for step in doc.get("steps", []):
        if step.get("type") != "deliver":
            continue
        connection_id = step.get("connection_id")
        if connection_id is None:
            out.append(Guardrail("egress", PASS, "no connection", step["id"]))
            continue
        config = connections.get(connection_id)
        if config is None:
            out.append(
                Guardrail("egress", FAIL, f"connection {connection_id} does not exist", step["id"])
            )
            continue
        host = connection_host(config)
        if host is None:
            out.append(Guardrail("egress", PASS, "no network host (local target)", step["id"]))
            continue
        addresses = _literal_addresses(host)
        if addresses is None or egress is None:
            out.append(
                Guardrail(
                    "egress",
                    PASS,
                    f"host '{host}' is a name: it is resolved and checked against the egress"
                    " allowlist on every delivery (not resolved at review)",
                    step["id"],
                )
            )
            continue
        refused = [(a, egress.refusal_reason(a)) for a in addresses]
        refused = [(a, r) for a, r in refused if r is not None]
        if refused:
            why = ", ".join(f"{a} ({r})" for a, r in refused)
            out.append(
                Guardrail(
                    "egress",
                    FAIL,
                    f"connection {connection_id} points at {host}, outside the egress allowlist:"
                    f" {why}; deliveries would be refused",
                    step["id"],
                )
            )
        else:
            out.append(
                Guardrail("egress", PASS, f"{host} is inside the egress allowlist", step["id"])
            )
    return out


def _sample_guardrails(doc: Mapping[str, Any], runs: list[dict[str, Any]]) -> list[Guardrail]:
    if not doc.get("samples"):
        return [
            Guardrail(
                "samples",
                WARN,
                "no samples: the dry run, the filter check and the expression cost check"
                " have nothing to run on",
            )
        ]
    out = [Guardrail("samples", PASS, f"{len(doc['samples'])} sample(s)")]
    reached: dict[str, int] = {}
    passed: dict[str, int] = {}
    for run in runs:
        for step in run["steps"]:
            step_id = base_step_id(step["step_id"])
            if any(s.get("id") == step_id and s["type"] == "filter" for s in doc["steps"]):
                reached[step_id] = reached.get(step_id, 0) + 1
                if step["status"] == str(StepStatus.SUCCEEDED):
                    passed[step_id] = passed.get(step_id, 0) + 1
    for step_id, count in reached.items():
        if not passed.get(step_id):
            out.append(
                Guardrail(
                    "filter_drops_everything",
                    WARN,
                    f"the filter drops every sample that reaches it ({count} of {count})",
                    step_id,
                )
            )
        else:
            out.append(
                Guardrail(
                    "filter_drops_everything",
                    PASS,
                    f"{passed[step_id]} of {count} sample(s) pass the filter",
                    step_id,
                )
            )
    return out


def _cost_guardrails(
    doc: Mapping[str, Any], runs: list[dict[str, Any]], budget_ms: float
) -> list[Guardrail]:
    kinds = {s["id"]: s["type"] for s in doc.get("steps", [])}
    worst: dict[str, float] = {}
    limited: set[str] = set()
    for run in runs:
        for step in run["steps"]:
            step_id = base_step_id(step["step_id"])
            if kinds.get(step_id) not in ("map", "filter", "route", "split"):
                continue
            worst[step_id] = max(worst.get(step_id, 0.0), step["duration_ms"])
            if (step.get("error") or {}).get("code") == _RESOURCE_LIMIT:
                limited.add(step_id)
    out = []
    for step_id, ms in worst.items():
        if step_id in limited:
            out.append(
                Guardrail(
                    "expensive_expression",
                    FAIL,
                    "the expression hit a resource limit (time or memory) on a sample",
                    step_id,
                )
            )
        elif ms > budget_ms:
            out.append(
                Guardrail(
                    "expensive_expression",
                    FAIL,
                    f"the expression took {ms:.0f} ms on a sample, over the {budget_ms:g} ms"
                    " budget",
                    step_id,
                )
            )
        else:
            out.append(
                Guardrail(
                    "expensive_expression",
                    PASS,
                    f"at most {ms:.1f} ms per sample (budget {budget_ms:g} ms)",
                    step_id,
                )
            )
    return out


def _test_guardrail(tests: list[dict[str, Any]]) -> Guardrail:
    if not tests:
        return Guardrail("sample_tests", WARN, "no sample tests: no mapping has an expected output")
    failing = [t["name"] for t in tests if t["status"] != PASS]
    if failing:
        return Guardrail(
            "sample_tests",
            FAIL,
            f"{len(failing)} of {len(tests)} sample test(s) fail: " + ", ".join(map(str, failing)),
        )
    return Guardrail("sample_tests", PASS, f"all {len(tests)} sample test(s) pass")


def guardrails(
    doc: Mapping[str, Any],
    *,
    has_owner: bool,
    connections: Mapping[int, Mapping[str, Any]],
    egress: EgressPolicy | None,
    sample_tests: list[dict[str, Any]],
    dry_runs: list[dict[str, Any]],
    budget_ms: float = EXPRESSION_TIME_BUDGET_MS,
    idempotency: Mapping[str, str] | None = None,
) -> list[Guardrail]:
    """Design-time checks. ``connections`` maps connection id → its (non-secret) config;
    ``sample_tests`` and ``dry_runs`` are the results of ``run_sample_tests`` / ``dry_run``;
    ``idempotency`` maps connector key → its declared idempotency (no check when None)."""
    out = [
        Guardrail("owner", PASS, "the flow has an accountable owner")
        if has_owner
        else Guardrail("owner", FAIL, "the flow has no owner: set an accountable owner first")
    ]
    out += _retry_guardrails(doc)
    if idempotency is not None:
        out += _idempotency_guardrails(doc, idempotency)
    out += _egress_guardrails(doc, connections, egress)
    out += _sample_guardrails(doc, dry_runs)
    out += _cost_guardrails(doc, dry_runs, budget_ms)
    out.append(_test_guardrail(sample_tests))
    return out


def blocking(found: list[Guardrail]) -> list[Guardrail]:
    """The guardrails that block approval."""
    return [g for g in found if g.status == FAIL]
