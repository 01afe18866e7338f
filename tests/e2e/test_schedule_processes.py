"""Two REAL scheduler processes fire a ``* * * * *`` schedule exactly once per minute between
them (SQLite and PostgreSQL ledgers).

To see many minutes in a few seconds both processes run the same accelerated clock
(FLOWGATE_CLOCK_SCALE=12 from a shared FLOWGATE_CLOCK_EPOCH: a scheduler minute takes five
real seconds; each process beats every real second, and a tick is on time for two beats).
Nothing else is faked: two OS processes race on the same database, each beat of each process
looks at the schedule, and only the ledger's unique event id decides who fires.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Run
from tests.support.live_flows import deliver_to_sink, make_live_flow
from tests.support.processes import Processes, clean_env, wait_for

pytestmark = pytest.mark.slow

SCALE = 12


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(tmp_path / "logs")
    try:
        yield processes
    finally:
        processes.stop_all()
        print(processes.logs())


def _count(flow_id: int) -> int:
    db.session.expire_all()
    return len(list(db.session.execute(select(Run.id).where(Run.flow_id == flow_id)).scalars()))


def test_two_scheduler_processes_fire_each_minute_once(
    app: Any, database_url: str, redis_url: str, sink: Any, procs: Processes, tmp_path: Path
) -> None:
    doc = deliver_to_sink({"type": "schedule", "config": {"cron": "* * * * *"}}, sink.url)
    flow, _ = make_live_flow(doc, "Every minute")
    env = clean_env(
        FLOWGATE_DATABASE_URL=database_url,
        FLOWGATE_REDIS_URL=redis_url,
        FLOWGATE_INSTANCE_PATH=str(tmp_path / "instance"),
        FLOWGATE_SECRET_KEY=app.config["SECRET_KEY"],
        FLOWGATE_DEMO="0",
        FLOWGATE_QUEUE_NAME=f"e2e-{uuid.uuid4().hex[:10]}",
        FLOWGATE_SWEEP_INTERVAL_SECONDS="1",
        FLOWGATE_CLOCK_SCALE=str(SCALE),
        FLOWGATE_CLOCK_EPOCH=str(time.time()),
        FLOWGATE_LOG_LEVEL="INFO",
        FLOWGATE_LOG_FORMAT="text",
    )
    first, second = procs.scheduler(env), procs.scheduler(env)

    wait_for(
        lambda: _count(flow.id) >= 4,
        timeout=150,
        what="four scheduler minutes",
        on_timeout=procs.logs,
    )
    procs.check_alive(first, second)
    for proc in (first, second):  # a clean stop: every fired tick's log line is written
        proc.expected_dead = True
        proc.signal_group(signal.SIGTERM)
    for proc in (first, second):
        assert proc.popen.wait(timeout=60) == 0, procs.logs()

    keys = list(
        db.session.execute(
            select(Run.idempotency_key).where(Run.flow_id == flow.id).order_by(Run.id)
        ).scalars()
    )
    prefix = f"schedule:{flow.id}:"
    minutes = sorted(
        datetime.strptime(key.removeprefix(prefix), "%Y-%m-%dT%H:%M:%SZ") for key in keys
    )
    assert len(minutes) == len(set(minutes)), keys  # never twice
    span = int((minutes[-1] - minutes[0]) / timedelta(minutes=1)) + 1
    assert [m - minutes[0] for m in minutes] == [timedelta(minutes=i) for i in range(span)], keys
    fired_by = [p.log(400).count("triggers.schedule_fired") for p in (first, second)]
    print(f"{len(minutes)} minutes fired; by process: {fired_by}")
    assert sum(fired_by) == len(minutes)
