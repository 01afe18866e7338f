"""flows.review: semantic diff, sample tests, dry run and guardrails (pure, no app)."""

from __future__ import annotations

import copy
from typing import Any

from connectors.egress import EgressPolicy
from flows import review
from flows.mapping import MappingError
from flows.sandbox import InProcessEvaluator

MAPPING = "{\n  'ref': 'WEB-' & $string(order_number),\n  'total': total\n}"


def doc(**extra: Any) -> dict[str, Any]:
    base = {
        "schema_version": 1,
        "trigger": {"type": "webhook", "config": {"business_key": "$string(order_number)"}},
        "steps": [
            {"id": "only_paid", "type": "filter", "condition": "status = 'paid'"},
            {"id": "to_oms", "type": "map", "expression": MAPPING},
            {
                "id": "send_oms",
                "type": "deliver",
                "connector": "http",
                "connection_id": 1,
                "config": {"method": "POST", "path": "/orders"},
                "retry": {"max_attempts": 3},
            },
        ],
        "edges": [
            {"from": "trigger", "to": "only_paid"},
            {"from": "only_paid", "to": "to_oms"},
            {"from": "to_oms", "to": "send_oms"},
        ],
        "layout": {"to_oms": {"x": 0, "y": 0}},
    }
    base.update(extra)
    return base


def test_moved_node_and_new_samples_are_no_change():
    old, new = doc(), doc(samples=[{"order_number": 1}])
    new["layout"] = {"to_oms": {"x": 300, "y": 40}, "send_oms": {"x": 9, "y": 9}}
    diff = review.semantic_diff(old, new)
    assert diff["unchanged"] is True
    assert diff["steps"] == {"added": [], "removed": [], "changed": []}
    assert diff["trigger"]["changed"] is False


def test_edited_mapping_line_shows_a_text_diff():
    new = doc()
    new["steps"][1]["expression"] = MAPPING.replace("'total': total", "'total': total * 100")
    diff = review.semantic_diff(doc(), new)
    [changed] = diff["steps"]["changed"]
    assert changed["id"] == "to_oms"
    [change] = changed["changes"]
    assert change["field"] == "expression"
    lines = change["diff"].splitlines()
    assert "-  'total': total" in lines and "+  'total': total * 100" in lines
    assert "+  'ref': 'WEB-' & $string(order_number)," not in lines  # unchanged line


def test_added_and_removed_steps_and_edges():
    new = doc()
    new["steps"] = [s for s in new["steps"] if s["id"] != "only_paid"]
    new["steps"].append({"id": "tag", "type": "map", "expression": "$"})
    new["edges"] = [
        {"from": "trigger", "to": "tag"},
        {"from": "tag", "to": "to_oms"},
        {"from": "to_oms", "to": "send_oms"},
    ]
    diff = review.semantic_diff(doc(), new)
    assert [s["id"] for s in diff["steps"]["added"]] == ["tag"]
    assert [s["id"] for s in diff["steps"]["removed"]] == ["only_paid"]
    assert {"from": "trigger", "to": "tag"} in diff["edges"]["added"]
    assert {"from": "only_paid", "to": "to_oms"} in diff["edges"]["removed"]
    assert diff["unchanged"] is False


def test_connection_config_and_retry_changes():
    new = doc()
    new["steps"][2]["connection_id"] = 2
    new["steps"][2]["config"]["path"] = "/v2/orders"
    new["steps"][2]["retry"] = {"max_attempts": 8}
    [changed] = review.semantic_diff(doc(), new)["steps"]["changed"]
    by_field = {c["field"]: c for c in changed["changes"]}
    assert by_field["connection_id"]["old"] == 1 and by_field["connection_id"]["new"] == 2
    assert by_field["config.path"]["new"] == "/v2/orders"
    assert by_field["retry"]["effective"] == {"max_attempts": {"old": 3, "new": 8}}


def test_first_version_lists_everything_as_added():
    diff = review.semantic_diff(None, doc())
    assert diff["first_version"] is True
    assert len(diff["steps"]["added"]) == 3 and diff["trigger"]["changed"] is True


def test_sample_tests_pass_fail_and_errors():
    tests = [
        {
            "name": "ok",
            "step": "to_oms",
            "input": {"order_number": 7, "total": 2},
            "expected": {"ref": "WEB-7", "total": 2.0},
        },
        {
            "name": "wrong",
            "step": "to_oms",
            "input": {"order_number": 7, "total": 2},
            "expected": {"ref": "WEB-8", "total": 2},
        },
        {"name": "no step", "step": "only_paid", "input": {}, "expected": None},
    ]
    results = review.run_sample_tests(doc(tests=tests), InProcessEvaluator())
    assert [r["status"] for r in results] == ["pass", "fail", "fail"]
    assert results[1]["actual"] == {"ref": "WEB-7", "total": 2}
    assert results[2]["error"]["code"] == "no_such_step"
    assert review.json_equal(1, 1.0) and not review.json_equal(True, 1)


def test_dry_run_records_what_destinations_would_receive():
    runs = review.dry_run(
        doc(samples=[{"status": "paid", "order_number": 1, "total": 5}, {"status": "open"}]),
        InProcessEvaluator(),
    )
    assert runs[0]["destinations"][0]["message"] == {"ref": "WEB-1", "total": 5}
    assert runs[0]["destinations"][0]["config"]["path"] == "/orders"
    assert runs[1]["status"] == "filtered" and runs[1]["destinations"] == []


def _guardrails(d: dict[str, Any], config: dict[str, Any] | None = None, **kw: Any) -> dict:
    evaluator = kw.pop("evaluator", InProcessEvaluator())
    found = review.guardrails(
        d,
        has_owner=kw.pop("has_owner", True),
        connections={1: config or {"base_url": "https://oms.example.test"}},
        egress=EgressPolicy.from_cidrs(["127.0.0.0/8"]),
        sample_tests=review.run_sample_tests(d, evaluator),
        dry_runs=review.dry_run(d, evaluator),
        **kw,
    )
    return {(g.id, g.step): g for g in found}


def test_defaults_warn_but_do_not_fail():
    d = doc()
    del d["steps"][2]["retry"]
    found = _guardrails(d)
    assert found[("retry_policy", "send_oms")].status == "warn"
    assert "5 attempts" in found[("retry_policy", "send_oms")].message
    assert found[("samples", None)].status == "warn"
    assert found[("owner", None)].status == "pass"
    assert found[("egress", "send_oms")].status == "pass"  # a name: never resolved here
    assert not review.blocking(list(found.values()))


def test_no_owner_fails():
    assert _guardrails(doc(), has_owner=False)[("owner", None)].status == "fail"


def test_literal_ips_outside_the_allowlist_fail_egress():
    for config in (
        {"base_url": "http://169.254.169.254/latest"},
        {"host": "10.0.0.1", "username": "x"},
        {"base_url": "http://[::1]:8080/"},  # loopback v6 is not in 127.0.0.0/8
    ):
        guard = _guardrails(doc(), config)[("egress", "send_oms")]
        assert guard.status == "fail", config
    assert (
        _guardrails(doc(), {"base_url": "http://127.0.0.1:9/"})[("egress", "send_oms")].status
        == "pass"
    )
    assert _guardrails(doc(), {"host": "localhost"})[("egress", "send_oms")].status == "fail"


def test_filter_dropping_every_sample_warns():
    found = _guardrails(doc(samples=[{"status": "open"}, {"status": "void"}]))
    assert found[("filter_drops_everything", "only_paid")].status == "warn"
    found = _guardrails(doc(samples=[{"status": "paid", "order_number": 1}]))
    assert found[("filter_drops_everything", "only_paid")].status == "pass"


class _Slow(InProcessEvaluator):
    def evaluate(self, expression, data, *, bindings=None):
        raise MappingError("resource_limit", "time limit: killed after 1250 ms")


def test_expensive_expression_fails():
    d = doc(samples=[{"status": "paid", "order_number": 1}])
    found = _guardrails(d, evaluator=_Slow())
    assert found[("expensive_expression", "to_oms")].status == "fail"
    assert found[("expensive_expression", "only_paid")].status == "pass"
    over = _guardrails(copy.deepcopy(d), budget_ms=0.0)
    assert over[("expensive_expression", "to_oms")].status == "fail"


def test_failing_sample_test_fails_its_guardrail():
    d = doc(tests=[{"name": "t", "step": "to_oms", "input": {}, "expected": 1}])
    assert _guardrails(d)[("sample_tests", None)].status == "fail"


def test_tests_do_not_change_the_content_hash():
    from flows.definition import content_hash

    with_tests = doc(tests=[{"name": "t", "step": "to_oms", "input": {}, "expected": 1}])
    assert content_hash(with_tests) == content_hash(doc())
