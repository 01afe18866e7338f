"""Step inputs stored once: a step whose input is the payload or an earlier step's output
stores a reference; the run detail resolves it (dead letters: tests/app/test_dead_letters.py
checks the failed step's full input; retention: tests/app/test_retention.py)."""

from __future__ import annotations

import json

from sqlalchemy import select, text

from app.extensions import db
from app.models import RunStep
from tests.app.test_walking_skeleton import ORDER, live_flow
from tests.support.migrations import MIGRATIONS, app_on_empty_database


def _rows(run_id: int) -> list[RunStep]:
    db.session.expire_all()
    return list(
        db.session.execute(
            select(RunStep).where(RunStep.run_id == run_id).order_by(RunStep.position)
        ).scalars()
    )


def test_inputs_are_references_and_the_run_detail_resolves_them(
    client, make_user, sink, run_worker
):
    ctx = live_flow(client, make_user, sink)
    run_id = client.post(f"/hooks/{ctx['flow']['slug']}", json=ORDER).get_json()["run_id"]
    run_worker()

    rows = _rows(run_id)
    # filter and map read the payload; the delivery reads the map's output (position 1)
    assert [(r.input_ref, r.stored_input) for r in rows] == [
        ("payload", None),
        ("payload", None),
        ("step:1", None),
    ]
    run = client.get(f"/api/v1/runs/{run_id}", headers=ctx["headers"]).get_json()
    assert run["status"] == "succeeded"
    steps = run["steps"]
    assert steps[0]["input"] == ORDER and steps[1]["input"] == ORDER
    assert steps[2]["input"] == steps[1]["output"]
    assert steps[2]["input"]["orderRef"] == "WEB-1001"
    assert sink.requests[0].json() == steps[2]["input"]


def test_downgrading_0014_writes_the_referenced_inputs_back(database_url, tmp_path):
    """Before the column goes, each reference is replaced by the input it stands for."""
    from flask_migrate import downgrade, upgrade

    from app.models import Flow, FlowVersion, Run

    with app_on_empty_database(database_url, tmp_path):
        upgrade(directory=MIGRATIONS, revision="heads")
        flow = Flow(name="f", slug="f")
        version = FlowVersion(flow=flow, number=1, definition={}, content_hash="x")
        run = Run(
            flow=flow,
            version=version,
            trigger_kind="webhook",
            payload={"order_number": 7},
            payload_hash="h",
            status="succeeded",
        )
        db.session.add(run)
        db.session.flush()
        step = dict(run=run, status="succeeded")
        db.session.add_all(
            [
                RunStep(**step, position=0, step_id="m", input_ref="payload", output={"r": 7}),
                RunStep(**step, position=1, step_id="d", input_ref="step:0", output={"ok": 1}),
                RunStep(**step, position=2, step_id="x", stored_input={"own": 1}, output=None),
            ]
        )
        db.session.commit()
        run_id = run.id
        db.session.remove()
        downgrade(directory=MIGRATIONS, revision="0013_notification_outbox")
        rows = db.session.execute(
            text("SELECT input FROM run_steps WHERE run_id = :r ORDER BY position"), {"r": run_id}
        ).scalars()
        inputs = [json.loads(v) if isinstance(v, str) else v for v in rows]
        assert inputs == [{"order_number": 7}, {"r": 7}, {"own": 1}]
        db.session.remove()
        upgrade(directory=MIGRATIONS, revision="heads")
