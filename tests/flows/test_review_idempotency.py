"""Per-destination idempotency in the review payload and its guardrail (flows.review)."""

from __future__ import annotations

from typing import Any

from flows import review

DECLARED = {"http": "key", "sql": "upsert", "email": "none", "file": "key"}


def _doc(*steps: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "trigger": {"type": "webhook"},
        "steps": list(steps),
        "edges": [{"from": "trigger", "to": s["id"]} for s in steps],
    }


def _deliver(step_id: str, connector: str, retry: Any = None, **config: Any) -> dict[str, Any]:
    step: dict[str, Any] = {
        "id": step_id,
        "type": "deliver",
        "connector": connector,
        "connection_id": 1,
        "config": config,
    }
    if retry is not None:
        step["retry"] = retry
    return step


DOC = _doc(
    {"id": "shape", "type": "map", "expression": "$"},
    _deliver("to_oms", "http", path="/orders"),
    _deliver("upsert_stock", "sql", table="stock", mode="upsert", key_columns=["sku", "store"]),
    _deliver("insert_log", "sql", table="log"),
    _deliver("insert_keyed", "sql", table="log", key_columns=["ref"]),
    _deliver("mail_ops", "email", to=["ops@shop.example"], subject="s", body="b"),
    _deliver("mail_once", "email", {"max_attempts": 1}, to=["a@b.example"], subject="s", body="b"),
)


def _guards(doc: dict[str, Any]) -> dict[str, review.Guardrail]:
    found = review.guardrails(
        doc,
        has_owner=True,
        connections={1: {}},
        egress=None,
        sample_tests=[],
        dry_runs=[],
        idempotency=DECLARED,
    )
    return {g.step: g for g in found if g.id == "idempotency" and g.step is not None}


def test_each_deliver_step_lists_its_idempotency() -> None:
    listed = {e["step"]: e for e in review.destination_idempotency(DOC, DECLARED)}
    assert list(listed) == [
        "to_oms",
        "upsert_stock",
        "insert_log",
        "insert_keyed",
        "mail_ops",
        "mail_once",
    ]
    assert (listed["to_oms"]["idempotency"], listed["to_oms"]["label"]) == ("key", "by key")
    assert listed["upsert_stock"]["idempotency"] == "upsert"
    assert listed["upsert_stock"]["label"] == "by upsert on sku, store"
    assert listed["insert_log"]["idempotency"] == "none"
    assert "plain insert" in listed["insert_log"]["label"]
    assert listed["insert_keyed"]["idempotency"] == "upsert"
    assert "unique key ref" in listed["insert_keyed"]["label"]
    assert (listed["mail_ops"]["idempotency"], listed["mail_ops"]["label"]) == ("none", "none")
    assert listed["mail_ops"]["max_attempts"] == 5  # the default policy
    assert listed["mail_once"]["max_attempts"] == 1


def test_guardrail_warns_on_retried_email_and_plain_sql_insert() -> None:
    guards = _guards(DOC)
    assert guards["to_oms"].status == review.PASS
    assert guards["upsert_stock"].status == review.PASS
    assert guards["insert_keyed"].status == review.PASS
    assert guards["insert_log"].status == review.WARN
    assert "without a natural key" in guards["insert_log"].message
    assert guards["mail_ops"].status == review.WARN
    assert "5 times" in guards["mail_ops"].message and "send twice" in guards["mail_ops"].message
    assert guards["mail_once"].status == review.PASS
    # a warning, never blocking
    assert not any(g.id == "idempotency" for g in review.blocking(list(guards.values())))


def test_unknown_connector_counts_as_not_idempotent_and_no_map_has_an_entry() -> None:
    doc = _doc(_deliver("odd", "carrier_pigeon", {"max_attempts": 3}))
    [entry] = review.destination_idempotency(doc, DECLARED)
    assert entry["idempotency"] == "none"
    assert _guards(doc)["odd"].status == review.WARN


def test_without_declarations_no_idempotency_guardrail_is_emitted() -> None:
    found = review.guardrails(
        DOC, has_owner=True, connections={1: {}}, egress=None, sample_tests=[], dry_runs=[]
    )
    assert not any(g.id == "idempotency" for g in found)
