"""End to end (SQLite and PostgreSQL): an email whose SMTP server drops the connection after
DATA is dead-lettered as ``ambiguous_delivery`` by the real worker — sent once, not retried —
and the dead-letter list finds it by that reason for the operator to decide on a replay."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Delivery, Run
from tests.flows.test_ambiguous_delivery import _server, _smtp_dropping_after_data
from tests.support.live_flows import make_connection, make_live_flow


def test_email_dropped_after_data_is_dead_lettered_as_ambiguous(client, make_user, run_worker):
    _, owner_h = make_user("owner")
    smtp = _server(_smtp_dropping_after_data)
    with smtp as port:
        connection_id = make_connection(
            "email",
            {
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
                "from_address": "orders@shop.example",
                "timeout_seconds": 2,
            },
        )
        doc = {
            "schema_version": 1,
            "trigger": {"type": "manual"},
            "steps": [
                {
                    "id": "mail_ops",
                    "type": "deliver",
                    "connector": "email",
                    "connection_id": connection_id,
                    "config": {
                        "to": ["ops@shop.example"],
                        "subject": "Order ${n}",
                        "body": "order ${n}",
                    },
                    "retry": {"max_attempts": 5, "backoff_seconds": 0.1, "max_backoff_seconds": 1},
                }
            ],
            "edges": [{"from": "trigger", "to": "mail_ops"}],
        }
        flow, _ = make_live_flow(doc, "Mail ops")
        r = client.post(f"/api/v1/flows/{flow.id}/run", json={"payload": {"n": 7}}, headers=owner_h)
        assert r.status_code == 202, r.get_json()
        run_worker()
        run_worker()  # nothing is left to retry
    db.session.expire_all()
    run = db.session.execute(select(Run).where(Run.flow_id == flow.id)).scalar_one()
    assert run.status == "dead_lettered", run.reason
    assert "ambiguous_delivery" in run.reason and "may have been delivered" in run.reason
    delivery = db.session.execute(select(Delivery).where(Delivery.run_id == run.id)).scalar_one()
    assert delivery.attempts == 1 and delivery.status == "dead_lettered"
    assert len(smtp.log) == 1 and b"order 7" in smtp.log[0]  # handed over once, never again

    r = client.get("/api/v1/dead-letters?reason=ambiguous_delivery", headers=owner_h)
    assert r.status_code == 200, r.get_json()
    assert [item["id"] for item in r.get_json()["items"]] == [run.id]
