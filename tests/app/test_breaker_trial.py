"""A failed half-open breaker trial is the breaker's probe, not the run's attempt (issue #5:
while the breaker is open deliveries wait and are not burned as attempts)."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Delivery
from app.stores import SqlDeliveryLedger, SqlRunStore
from flows.results import DeliveryStatus
from tests.app.test_execution import post_order
from tests.app.test_walking_skeleton import live_flow


def test_the_ledger_takes_back_the_attempt_of_a_failed_trial(client, make_user, sink, app):
    ctx = live_flow(client, make_user, sink)
    run_id = post_order(client, ctx)
    store = SqlRunStore()
    store.claim(run_id, lease_seconds=60)
    ledger = SqlDeliveryLedger(lease_seconds=60)
    assert ledger.begin(run_id, "send_oms", "key-1", new=True) == 1
    ledger.fail(
        run_id,
        "send_oms",
        status=DeliveryStatus.RETRYING,
        error="connection refused",
        response_code=None,
        response_excerpt="",
    )
    store.commit()  # outcomes are written with the batch's pending writes
    assert ledger.begin(run_id, "send_oms", "key-1") == 2  # an ordinary failure counts
    ledger.fail(
        run_id,
        "send_oms",
        status=DeliveryStatus.RETRYING,
        error="connection refused (trial)",
        response_code=None,
        response_excerpt="",
        uncounted=True,
    )
    store.commit()
    db.session.remove()
    row = db.session.execute(select(Delivery)).scalar_one()
    assert row.attempts == 1 and row.status == DeliveryStatus.RETRYING.value
    assert row.last_error == "connection refused (trial)"  # still visible, just not counted
