"""Step inputs stored once: a step whose input is the payload or an earlier step's output
stores a reference; the run detail resolves it (dead letters: tests/app/test_dead_letters.py
checks the failed step's full input; retention: tests/app/test_retention.py)."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import RunStep
from tests.app.test_walking_skeleton import ORDER, live_flow


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
