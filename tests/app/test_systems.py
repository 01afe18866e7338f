"""Systems: the landscape inventory, managed by owners/admins, read by analysts, audited."""

from __future__ import annotations

from app.extensions import db
from app.models import AuditEvent, Flow, FlowVersion


def create(client, headers, **fields):
    body = {"name": "OMS", "kind": "oms", "criticality": "high", **fields}
    return client.post("/api/v1/systems", json=body, headers=headers)


def test_owner_creates_reads_updates_and_deletes_a_system(client, make_user):
    owner, owner_h = make_user("owner")
    r = create(client, owner_h, owner_id=owner.id, notes="Runs in the DC")
    assert r.status_code == 201, r.get_json()
    system = r.get_json()
    assert system["kind"] == "oms" and system["criticality"] == "high"
    assert system["owner"] == {"id": owner.id, "email": owner.email}

    r = client.get(f"/api/v1/systems/{system['id']}", headers=owner_h)
    assert r.status_code == 200 and r.get_json()["notes"] == "Runs in the DC"

    r = client.patch(
        f"/api/v1/systems/{system['id']}",
        json={"criticality": "critical", "owner_id": None, "notes": "moved to cloud"},
        headers=owner_h,
    )
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["criticality"] == "critical" and r.get_json()["owner"] is None

    assert client.delete(f"/api/v1/systems/{system['id']}", headers=owner_h).status_code == 204
    assert client.get(f"/api/v1/systems/{system['id']}", headers=owner_h).status_code == 404

    actions = [e.action for e in db.session.query(AuditEvent).order_by(AuditEvent.id)]
    assert actions[-3:] == ["system.created", "system.updated", "system.deleted"]
    updated = db.session.query(AuditEvent).filter_by(action="system.updated").one()
    assert updated.detail["changes"]["criticality"] == {"from": "high", "to": "critical"}


def test_analyst_reads_but_cannot_change_systems(client, make_user):
    _, owner_h = make_user("owner")
    _, analyst_h = make_user("analyst")
    system = create(client, owner_h).get_json()
    assert client.get("/api/v1/systems", headers=analyst_h).get_json()["total"] == 1
    assert create(client, analyst_h, name="ERP", kind="erp").status_code == 403
    r = client.patch(f"/api/v1/systems/{system['id']}", json={"notes": "x"}, headers=analyst_h)
    assert r.status_code == 403
    assert client.delete(f"/api/v1/systems/{system['id']}", headers=analyst_h).status_code == 403


def test_bad_input_is_a_problem(client, make_user):
    _, admin_h = make_user("admin")
    r = create(client, admin_h, kind="mainframe")
    assert r.status_code == 422 and "kind" in r.get_json()["errors"]["json"]
    r = create(client, admin_h, criticality="extreme")
    assert r.status_code == 422
    r = create(client, admin_h, owner_id=999_999)
    assert r.status_code == 422 and r.content_type == "application/problem+json"
    first = create(client, admin_h).get_json()
    assert create(client, admin_h).status_code == 409  # same name
    other = create(client, admin_h, name="ERP", kind="erp").get_json()
    r = client.patch(f"/api/v1/systems/{other['id']}", json={"name": "OMS"}, headers=admin_h)
    assert r.status_code == 409
    r = client.patch(f"/api/v1/systems/{first['id']}", json={"colour": "red"}, headers=admin_h)
    assert r.status_code == 422  # unknown field


def test_delete_is_refused_while_a_connection_or_contract_references_it(client, make_user):
    _, owner_h = make_user("owner")
    oms = create(client, owner_h).get_json()
    erp = create(client, owner_h, name="ERP", kind="erp").get_json()
    r = client.post(
        "/api/v1/connections",
        json={
            "name": "OMS API",
            "connector": "http",
            "config": {"base_url": "http://127.0.0.1:9/", "auth": "none"},
            "system_id": oms["id"],
        },
        headers=owner_h,
    )
    assert r.status_code == 201, r.get_json()
    r = client.delete(f"/api/v1/systems/{oms['id']}", headers=owner_h)
    assert r.status_code == 409
    assert r.get_json()["connections"] == ["OMS API"]

    flow = Flow(name="ERP feed", slug="erp-feed")
    db.session.add(flow)
    db.session.add(
        FlowVersion(
            flow=flow,
            number=1,
            definition={},
            content_hash="x",
            contract={"source_system_id": 12345, "destination_system_ids": [erp["id"]]},
        )
    )
    db.session.commit()
    r = client.delete(f"/api/v1/systems/{erp['id']}", headers=owner_h)
    assert r.status_code == 409
    assert r.get_json()["contracts"] == [f"flow {flow.id} v1"]
    assert client.get(f"/api/v1/systems/{erp['id']}", headers=owner_h).status_code == 200
