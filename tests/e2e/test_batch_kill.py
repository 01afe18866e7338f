"""``kill -9`` of a worker in the middle of a batch (issue #5): every run delivered exactly once.

The runs are queued before the worker starts, so its first drain job claims a full batch.
The sink holds the batch's third delivery while the worker is killed. At that moment the
batch's first two runs are committed as succeeded (the second's final write rode on the
third's ``sending`` commit), the third is in flight and the rest of the batch is claimed but
not started. A new worker and the scheduler must then finish every run: the in-flight one
re-sent with its key, the untouched batch-mates sent once each, and nothing sent twice except
the in-flight key.
"""

# ruff: noqa: F811 - the shared fixtures are imported by name and requested as arguments
from __future__ import annotations

import time
from collections import defaultdict

import pytest

from tests.e2e.test_processes import (  # noqa: F401 - fixtures
    delivery_rows,
    live_flow,
    post_order,
    procs,
    run_id_of,
    run_statuses,
    stack_env,
    wait_all_final,
)
from tests.support.processes import free_port, wait_for, wait_http
from tests.support.sink import Answer

pytestmark = pytest.mark.slow

BATCH = 6


def test_a_kill_in_the_middle_of_a_batch_loses_no_run_and_sends_none_twice(
    app,
    make_user,
    sink,
    procs,
    stack_env,
):
    total, held = 14, 3
    env = {**stack_env, "FLOWGATE_RUN_BATCH_SIZE": str(BATCH)}
    sink.default = Answer(delay=0.05)
    sink.scripted = [Answer(delay=0.05)] * (held - 1) + [Answer(delay=2.5)]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    procs.web(env, port)
    slug = live_flow(app, make_user, sink)
    wait_http(f"{base}/healthz", timeout=40, procs=procs, ok={200})
    accepted = [post_order(base, slug, 8000 + i) for i in range(total)]
    assert [status for status, _ in accepted] == [202] * total, accepted
    run_ids = sorted(body["run_id"] for _, body in accepted)

    worker = procs.worker(env)
    wait_for(
        lambda: procs.check_alive() or len(sink.requests) >= held,
        timeout=60,
        interval=0.01,
        what=f"the sink to receive delivery #{held}",
        on_timeout=procs.logs,
    )
    worker.kill9()
    in_flight_key = sink.requests[held - 1].headers["Idempotency-Key"]
    in_flight = run_id_of(in_flight_key)
    at_kill = run_statuses()
    sent_at_kill = {rid: row[0] for rid, row in delivery_rows().items()}
    # The kill hit a batch: two deliveries done, one in flight, the rest of the batch
    # claimed, unstarted. The two acknowledgements are committed (each with the next
    # delivery's ``sending`` row); the runs' own final writes wait for the batch's flush,
    # so those two may still read ``running``.
    assert in_flight == run_ids[held - 1]
    assert sent_at_kill == {
        **dict.fromkeys(run_ids[: held - 1], "acknowledged"),
        in_flight: "sending",
    }, sent_at_kill
    assert set(at_kill.get("succeeded", [])) <= set(run_ids[: held - 1]), at_kill
    claimed = sorted(at_kill.get("succeeded", []) + at_kill.get("running", []))
    assert claimed == run_ids[:BATCH], at_kill
    assert at_kill.get("queued") == run_ids[BATCH:], at_kill
    unstarted = run_ids[held:BATCH]
    assert not any(run_id_of(r.headers["Idempotency-Key"]) in unstarted for r in sink.requests)

    killed_at = time.monotonic()
    procs.worker(env)
    procs.scheduler(env)  # its sweep re-queues the batch once the 3 s leases have expired
    statuses = wait_all_final(total, timeout=90, procs=procs)
    assert statuses == {"succeeded": run_ids}, statuses

    effects = sink.effects()
    assert sorted(run_id_of(k) for k in effects) == run_ids
    repeated = {k: n for k, n in effects.items() if n > 1}
    assert set(repeated) <= {in_flight_key}, repeated
    by_key: dict[str, set[bytes]] = defaultdict(set)
    for request in sink.requests:
        by_key[request.headers["Idempotency-Key"]].add(request.body)
    assert all(len(bodies) == 1 for bodies in by_key.values())
    deliveries = delivery_rows()
    assert {rid: row[0] for rid, row in deliveries.items()} == dict.fromkeys(
        run_ids, "acknowledged"
    )
    # The batch-mates that never started were sent once, on their first delivery attempt.
    assert all(deliveries[rid][1] == 1 for rid in unstarted), deliveries
    assert deliveries[in_flight][1] == effects[in_flight_key]
    print(f"all {total} runs final {time.monotonic() - killed_at:.1f}s after the kill")
