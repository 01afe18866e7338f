"""Back-pressure on scheduled triggers (SQLite and PostgreSQL): past the flow's backlog
threshold a due tick is not fired, the reason is kept, and it fires once the backlog drains
(within the tick's grace) instead of the queue growing."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update

from app.extensions import db
from app.models import PollState, Run
from app.services.intake import record_run
from app.services.triggers import fire_due_schedules
from flows.results import RunStatus
from tests.support.live_flows import deliver_to_sink, make_live_flow


def _scheduled(flow_id: int) -> list[Run]:
    db.session.expire_all()
    return list(
        db.session.execute(
            select(Run).where(Run.flow_id == flow_id, Run.trigger_kind == "schedule")
        ).scalars()
    )


def test_a_backlogged_schedule_pauses_records_why_and_resumes(app, sink):
    app.config["FLOWGATE_MAX_BACKLOG"] = 2
    doc = deliver_to_sink({"type": "schedule", "config": {"cron": "* * * * *"}}, sink.url)
    flow, version = make_live_flow(doc, "Nightly stock")
    for n in range(2):  # two messages already waiting
        record_run(flow, version, trigger_kind="manual", message={"n": n})
    now = datetime.now(UTC).replace(second=1, microsecond=0)

    counts = fire_due_schedules(app, now)

    assert counts["paused"] == 1 and counts["fired"] == 0
    assert _scheduled(flow.id) == []
    state = db.session.execute(select(PollState).where(PollState.flow_id == flow.id)).scalar_one()
    assert state.trigger_type == "schedule"
    assert state.paused_reason == "backlog: this flow has 2 messages waiting (limit 2); retry later"
    assert state.paused_at is not None

    db.session.execute(
        update(Run).where(Run.flow_id == flow.id).values(status=RunStatus.SUCCEEDED.value)
    )
    db.session.commit()
    app.extensions.pop("flowgate.backlog", None)  # intake caches the count for a second
    counts = fire_due_schedules(app, now.replace(second=5))  # within the grace (10 s)

    assert counts["fired"] == 1 and counts["paused"] == 0
    runs = _scheduled(flow.id)
    assert len(runs) == 1
    assert runs[0].payload["scheduled_for"] == now.replace(second=0).isoformat()
    db.session.expire_all()
    assert db.session.get(PollState, state.id).paused_reason is None
