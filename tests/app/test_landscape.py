"""The landscape: systems as nodes, live flows as edges coloured by recent health, risks."""

from __future__ import annotations

import csv
import io
import time

from app import runtime
from app.extensions import db
from app.models import Flow, FlowVersion, System
from app.redis_conn import get_redis
from flows import landscape as rules
from tests.app.test_execution import post_order
from tests.app.test_walking_skeleton import ORDER, live_flow
from tests.support.sink import Answer


def mapped_flow(client, make_user, sink):
    """The walking-skeleton flow, its OMS connection placed in the inventory."""
    ctx = live_flow(client, make_user, sink)
    _, admin_h = make_user("admin")
    systems = {}
    for name, kind, criticality in (("Web shop", "commerce", "high"), ("OMS", "oms", "critical")):
        r = client.post(
            "/api/v1/systems",
            json={"name": name, "kind": kind, "criticality": criticality},
            headers=admin_h,
        )
        systems[name] = r.get_json()["id"]
    connection = client.get("/api/v1/connections", headers=admin_h).get_json()["items"][0]
    r = client.patch(
        f"/api/v1/connections/{connection['id']}",
        json={"system_id": systems["OMS"]},
        headers=admin_h,
    )
    assert r.status_code == 200, r.get_json()
    set_contract(ctx["flow"]["id"], None)  # each test states the contract it needs
    return ctx | {"systems": systems, "connection": connection, "admin_headers": admin_h}


def landscape(client, headers):
    r = client.get("/api/v1/landscape", headers=headers)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def set_contract(flow_id: int, contract: dict | None) -> None:
    version = db.session.query(FlowVersion).filter_by(flow_id=flow_id, status="live").one()
    version.contract = contract
    db.session.commit()


def test_edges_run_from_source_to_destination_system_coloured_by_health(
    client, make_user, sink, run_worker
):
    ctx = mapped_flow(client, make_user, sink)
    shop, oms = ctx["systems"]["Web shop"], ctx["systems"]["OMS"]

    # No contract and no trigger connection: the source is unknown, nothing ran yet.
    data = landscape(client, ctx["headers"])
    [edge] = data["edges"]
    assert (edge["source"], edge["target"]) == ("unknown", str(oms))
    assert edge["health"] == "grey"
    assert edge["label"] == "Unknown source → OMS: idle"
    assert {str(shop), str(oms), "unknown"} <= {n["id"] for n in data["nodes"]}

    set_contract(ctx["flow"]["id"], {"source_system_id": shop, "destination_system_ids": [oms]})
    for n in (1, 2):
        post_order(client, ctx, dict(ORDER, order_number=n))
    run_worker()
    [edge] = landscape(client, ctx["headers"])["edges"]
    assert (edge["source"], edge["target"]) == (str(shop), str(oms))
    assert edge["health"] == "green" and edge["counts"]["succeeded"] == 2
    assert edge["label"] == "Web shop → OMS: healthy"

    sink.default = Answer(status=400)  # the OMS refuses: the runs are dead-lettered
    for n in (3, 4):
        post_order(client, ctx, dict(ORDER, order_number=n))
    run_worker()
    data = landscape(client, ctx["headers"])
    [edge] = data["edges"]
    assert edge["health"] == "red" and edge["health_label"] == "failing"
    assert edge["counts"]["failed"] == 2
    assert "2 of 4 runs failed" in edge["reason"]
    assert edge["label"] == "Web shop → OMS: failing"

    [risk] = data["risks"]
    factors = {f["key"]: f for f in risk["factors"]}
    assert factors["criticality"]["weight"] == 4.0  # the OMS is critical
    assert factors["failure_rate"]["weight"] == 3.0  # 1 + 4 × 50 %
    assert factors["error_policy"]["weight"] == 1.0  # the deliver step has a retry policy
    assert "50%" in factors["failure_rate"]["explanation"]


def test_an_open_breaker_turns_the_edge_red(client, make_user, sink, app, run_worker):
    ctx = mapped_flow(client, make_user, sink)
    post_order(client, ctx, dict(ORDER, order_number=1))
    run_worker()
    assert landscape(client, ctx["headers"])["edges"][0]["health"] == "green"
    gate = runtime.delivery_gate(app)
    get_redis(app).set(gate._key(ctx["connection"]["id"], "open_until"), time.time() + 60)
    [edge] = landscape(client, ctx["headers"])["edges"]
    assert edge["health"] == "red" and edge["breaker"] == "open"
    assert "circuit breaker is open" in edge["reason"]


def test_risk_ranking_puts_the_riskier_integration_first(client, make_user, sink):
    ctx = mapped_flow(client, make_user, sink)
    shop = ctx["systems"]["Web shop"]
    # A second live flow without owner, retry policy or known systems but carrying PII.
    flow = Flow(name="Newsletter sync", slug="newsletter-sync")
    db.session.add(flow)
    db.session.add(
        FlowVersion(
            flow=flow,
            number=1,
            status="live",
            definition={"trigger": {"type": "webhook"}, "steps": []},
            content_hash="x",
            contract={
                "source_system_id": shop,
                "destination_system_ids": [ctx["systems"]["OMS"]],
                "fields": [{"destination_system_id": shop, "field": "email", "pii": True}],
            },
        )
    )
    db.session.add(
        FlowVersion(flow=flow, number=2, status="in_review", definition={}, content_hash="y")
    )
    db.session.commit()
    risks = landscape(client, ctx["headers"])["risks"]
    assert [r["flow_name"] for r in risks] == ["Newsletter sync", "Web orders to OMS"]
    factors = {f["key"]: f["weight"] for f in risks[0]["factors"]}
    assert factors["owner"] == 1.5 and factors["error_policy"] == 1.5
    assert factors["pii"] == 1.3 and factors["unreviewed"] == 1.2
    assert risks[0]["score"] > risks[1]["score"]


def test_export_inventory_as_json_and_csv_without_secrets(client, make_user, sink):
    ctx = mapped_flow(client, make_user, sink)
    db.session.get(System, ctx["systems"]["OMS"]).notes = '=HYPERLINK("http://x")'
    db.session.commit()
    h = ctx["headers"]
    r = client.get("/api/v1/landscape/export?format=json", headers=h)
    assert r.status_code == 200
    data = r.get_json()
    assert {"OMS", "Web shop"} <= {s["name"] for s in data["systems"]}
    [integration] = data["integrations"]
    assert integration["flow"] == "Web orders to OMS"
    assert integration["destination_systems"] == ["OMS"]

    r = client.get("/api/v1/landscape/export?format=csv", headers=h)
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert rows[0]["flow"] == "Web orders to OMS" and rows[0]["destination_systems"] == "OMS"
    r = client.get("/api/v1/landscape/export?format=csv&table=systems", headers=h)
    systems = {row["name"]: row for row in csv.DictReader(io.StringIO(r.get_data(as_text=True)))}
    assert systems["OMS"]["notes"].startswith("'=")  # no formula injection
    for fmt in ("json", "csv"):
        body = client.get(f"/api/v1/landscape/export?format={fmt}", headers=h).get_data(True)
        assert "s3cr3t-token" not in body
    assert client.get("/api/v1/landscape/export?format=xml", headers=h).status_code == 422
    assert client.get("/api/v1/landscape").status_code == 401


def test_health_rules():
    counts = rules.WindowCounts
    assert rules.edge_health(counts()).status == "grey"
    assert rules.edge_health(counts(succeeded=5)).status == "green"
    assert rules.edge_health(counts(succeeded=9, failed=1)).status == "amber"
    assert rules.edge_health(counts(succeeded=3, failed=1)).status == "red"  # 25 %
    assert rules.edge_health(counts(succeeded=5, retrying=1)).status == "amber"
    assert rules.edge_health(counts(succeeded=5), breaker="open").status == "red"
    assert rules.edge_health(counts(succeeded=5), breaker="half_open").status == "amber"


def test_risk_is_a_product_of_explained_factors():
    base = dict(
        criticality="low",
        failure_rate=0.0,
        has_owner=True,
        has_error_policy=True,
        has_pii=False,
        unreviewed_changes=False,
        days_since_change=10,
    )
    assert rules.risk(rules.RiskFacts(**base)).score == 1.0
    worst = rules.risk(
        rules.RiskFacts(
            criticality="critical",
            failure_rate=1.0,
            has_owner=False,
            has_error_policy=False,
            has_pii=True,
            unreviewed_changes=True,
            days_since_change=400,
        )
    )
    assert worst.score == round(4 * 5 * 1.5 * 1.5 * 1.3 * 1.2 * 1.3, 2)
    assert len(worst.factors) == 7 and all(f.explanation for f in worst.factors)
    stale = rules.risk(rules.RiskFacts(**(base | {"days_since_change": 200})))
    assert stale.score == 1.15
