"""HTTP poll trigger against a real paginated API on 127.0.0.1, runs recorded in the ledger
(SQLite and PostgreSQL): pages followed by cursor, each item once, the cursor saved only after
the runs, seeding, the interval, one poller across schedulers, back-pressure, failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from app.extensions import db
from app.models import PollState, Run
from app.models._types import utcnow
from app.services.polling import fire_due_polls, poll_context
from connectors.base import ConnectorContext, RetryableConnectorError
from connectors.poll_http import HttpPollTrigger
from flows.results import RunStatus
from tests.support.live_flows import deliver_to_sink, make_connection, make_live_flow
from tests.support.paged_api import PagedApi

CONFIG = {
    "path": "/stock",
    "interval_seconds": 60,
    "cursor_param": "cursor",
    "page_size_param": "limit",
    "page_size": 3,
    "items": "data.items",
    "next_cursor": "next",
    "id": "sku & '@' & $string(version)",
}


@pytest.fixture
def api() -> Iterator[PagedApi]:
    server = PagedApi().start()
    yield server
    server.stop()


def _stock(n: int, version: int = 1) -> dict[str, Any]:
    return {"sku": f"SKU-{n:03d}", "qty": n * 10, "version": version}


def _flow(api: PagedApi, sink: Any, **config: Any) -> int:
    connection_id = make_connection(
        "poll_http", {"base_url": api.url, "auth": "bearer"}, {"token": "poll-token-123"}
    )
    trigger = {"type": "poll_http", "connection_id": connection_id, "config": {**CONFIG, **config}}
    flow, _ = make_live_flow(deliver_to_sink(trigger, sink.url), "Stock poll")
    return flow.id


def _runs(flow_id: int) -> list[Run]:
    db.session.expire_all()
    return list(
        db.session.execute(select(Run).where(Run.flow_id == flow_id).order_by(Run.id)).scalars()
    )


def _skus(flow_id: int) -> list[str]:
    return [run.payload["sku"] for run in _runs(flow_id)]


def _state(flow_id: int) -> PollState:
    db.session.expire_all()
    return db.session.execute(select(PollState).where(PollState.flow_id == flow_id)).scalar_one()


def test_poll_follows_pages_and_fires_each_new_item_once(app, api, sink):
    api.add(*(_stock(n) for n in range(1, 8)))  # 7 items: pages of 3, 3, 1
    flow_id = _flow(api, sink)
    t0 = utcnow()

    counts = fire_due_polls(app, t0)

    assert counts["fired"] == 7 and counts["failed"] == 0
    assert _skus(flow_id) == [f"SKU-{n:03d}" for n in range(1, 8)]
    runs = _runs(flow_id)
    assert {r.trigger_kind for r in runs} == {"poll"}
    assert runs[0].idempotency_key == f"poll:{flow_id}:SKU-001@1"
    assert [r["query"].get("cursor") for r in api.requests] == [None, "3", "6"]
    assert all(r["query"]["limit"] == "3" for r in api.requests)
    assert api.requests[0]["headers"]["authorization"] == "Bearer poll-token-123"
    state = _state(flow_id)
    assert state.cursor == "6" and state.last_error is None and state.fired == 7

    # Within the interval nothing is read; after it, only what is new starts runs.
    api.add(_stock(8), _stock(2, version=2))  # a new item, and a change of SKU-002
    assert fire_due_polls(app, t0 + timedelta(seconds=30))["polled"] == 0
    assert len(api.requests) == 3
    counts = fire_due_polls(app, t0 + timedelta(seconds=61))
    assert counts["fired"] == 2
    assert _skus(flow_id)[7:] == ["SKU-008", "SKU-002"]
    assert _runs(flow_id)[-1].payload == {"sku": "SKU-002", "qty": 20, "version": 2}

    # Reading the same last page again fires nothing.
    assert fire_due_polls(app, t0 + timedelta(seconds=122))["fired"] == 0
    assert len(_runs(flow_id)) == 9


def test_lost_cursor_save_never_duplicates_runs(app, api, sink):
    """A crash after the runs committed but before the cursor was saved: the page is read
    again and the ledger's unique event ids turn every repeat into a duplicate."""
    api.add(*(_stock(n) for n in range(1, 6)))
    flow_id = _flow(api, sink)
    t0 = utcnow()
    fire_due_polls(app, t0)
    assert len(_runs(flow_id)) == 5
    db.session.execute(
        update(PollState).where(PollState.flow_id == flow_id).values(cursor=None, seen_ids=None)
    )
    db.session.commit()

    assert fire_due_polls(app, t0 + timedelta(seconds=61))["fired"] == 0
    assert len(_runs(flow_id)) == 5
    assert len(api.requests) == 4  # both pages read again


def test_seed_on_first_poll_fires_only_later_items(app, api, sink):
    api.add(*(_stock(n) for n in range(1, 6)))
    flow_id = _flow(api, sink, seed_on_first_poll=True)
    t0 = utcnow()
    assert fire_due_polls(app, t0)["fired"] == 0
    assert _runs(flow_id) == []
    assert _state(flow_id).cursor == "3"

    api.add(_stock(6))
    assert fire_due_polls(app, t0 + timedelta(seconds=61))["fired"] == 1
    assert _skus(flow_id) == ["SKU-006"]


def test_a_slow_source_yields_the_beat_and_resumes_on_the_next(app, api, sink):
    """A poll stops between pages once it used the scheduler's beat (at least 1 s), so that
    schedules are not held up; the rest is read on the next beat, not an interval later."""
    app.config["FLOWGATE_SWEEP_INTERVAL_SECONDS"] = 1
    api.add(*(_stock(n) for n in range(1, 8)))
    api.delay = 0.6
    flow_id = _flow(api, sink)
    t0 = utcnow()
    assert fire_due_polls(app, t0)["fired"] == 6  # two pages, then the budget was spent
    state = _state(flow_id)
    assert state.cursor == "6" and state.next_poll_at == t0
    assert fire_due_polls(app, t0 + timedelta(seconds=1))["fired"] == 1
    assert _state(flow_id).next_poll_at == t0 + timedelta(seconds=61)


def test_a_failed_first_poll_still_seeds_next_time(app, api, sink):
    api.add(*(_stock(n) for n in range(1, 5)))
    flow_id = _flow(api, sink, seed_on_first_poll=True)
    api.status = 503
    t0 = utcnow()
    assert fire_due_polls(app, t0)["failed"] == 1
    api.status = 200
    assert fire_due_polls(app, t0 + timedelta(seconds=61))["fired"] == 0
    assert _runs(flow_id) == []
    api.add(_stock(5))
    assert fire_due_polls(app, t0 + timedelta(seconds=122))["fired"] == 1


def test_a_changed_source_starts_afresh_and_seeds_again(app, api, sink):
    from app.models import FlowVersion

    api.add(*(_stock(n) for n in range(1, 3)))
    flow_id = _flow(api, sink, seed_on_first_poll=True)
    fire_due_polls(app, utcnow())
    version = db.session.execute(
        select(FlowVersion).where(FlowVersion.flow_id == flow_id)
    ).scalar_one()
    definition = dict(version.definition)
    definition["trigger"] = {
        **definition["trigger"],
        "config": {**definition["trigger"]["config"], "query": {"warehouse": "B"}},
    }
    version.definition = definition
    db.session.commit()
    fire_due_polls(app, utcnow() + timedelta(seconds=61))
    assert _state(flow_id).polls == 1  # reset, then this poll
    assert api.requests[-1]["query"] == {"warehouse": "B", "limit": "3"}  # from the start
    assert _runs(flow_id) == []  # seeded again, nothing fired


def test_two_schedulers_poll_a_flow_once(app, api, sink):
    api.add(*(_stock(n) for n in range(1, 10)))
    flow_id = _flow(api, sink)
    now = utcnow()
    results: list[dict[str, int]] = []
    barrier = threading.Barrier(2)

    def scheduler() -> None:
        with app.app_context():
            barrier.wait()
            results.append(fire_due_polls(app, now))
            db.session.remove()

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(r["polled"] for r in results) == [0, 1]
    assert sum(r["fired"] for r in results) == 9
    assert len(_runs(flow_id)) == 9
    assert len(api.requests) == 3  # one reader: each page read once


def test_backlog_pauses_the_poll_and_says_why(app, api, sink):
    app.config["FLOWGATE_MAX_BACKLOG"] = 3
    api.add(*(_stock(n) for n in range(1, 8)))
    flow_id = _flow(api, sink)
    t0 = utcnow()

    counts = fire_due_polls(app, t0)

    assert counts["fired"] == 3 and counts["paused"] == 1
    state = _state(flow_id)
    assert state.cursor == "3"  # the page whose runs are in stays read
    assert state.paused_reason.startswith("backlog: this flow has 3 messages waiting")
    assert len(api.requests) == 1  # the queue did not grow: no further page was read

    # The backlog drains: the next poll goes on from the cursor and the pause is cleared.
    db.session.execute(
        update(Run).where(Run.flow_id == flow_id).values(status=RunStatus.SUCCEEDED.value)
    )
    db.session.commit()
    app.extensions.pop("flowgate.backlog", None)  # the count is cached for a second
    counts = fire_due_polls(app, t0 + timedelta(seconds=61))
    assert counts["fired"] == 3 and counts["paused"] == 1  # 3 more, then paused again
    app.config["FLOWGATE_MAX_BACKLOG"] = 100
    app.extensions.pop("flowgate.backlog", None)
    counts = fire_due_polls(app, t0 + timedelta(seconds=122))
    assert counts["fired"] == 1 and counts["paused"] == 0
    assert _state(flow_id).paused_reason is None
    assert len(set(_skus(flow_id))) == 7 == len(_runs(flow_id))


def test_a_failing_api_is_recorded_and_retried_next_interval(app, api, sink):
    api.add(_stock(1))
    flow_id = _flow(api, sink)
    api.status = 503
    t0 = utcnow()
    counts = fire_due_polls(app, t0)
    assert counts["failed"] == 1 and counts["fired"] == 0
    state = _state(flow_id)
    assert "HTTP 503" in state.last_error and state.cursor is None
    assert state.claimed_until is None and state.next_poll_at == t0 + timedelta(seconds=60)
    api.status = 200
    assert fire_due_polls(app, t0 + timedelta(seconds=61))["fired"] == 1
    assert _state(flow_id).last_error is None


def test_a_500_mid_pagination_keeps_the_pages_read_and_resumes_after_them(app, api, sink):
    """Reliability case 30: page 1 is fine, page 2 fails. Page 1's runs stay (once), the
    failure is recorded, and the next poll goes on from the cursor after page 1."""
    api.add(*(_stock(n) for n in range(1, 8)))  # pages of 3, 3, 1
    flow_id = _flow(api, sink)
    api.answers["3"] = (500, {"error": "internal error"})
    t0 = utcnow()

    counts = fire_due_polls(app, t0)

    assert counts["fired"] == 3 and counts["failed"] == 1
    assert [r["query"].get("cursor") for r in api.requests] == [None, "3"]
    assert _skus(flow_id) == ["SKU-001", "SKU-002", "SKU-003"]
    state = _state(flow_id)
    assert state.cursor == "3" and "HTTP 500" in state.last_error
    assert state.claimed_until is None and state.next_poll_at == t0 + timedelta(seconds=60)

    del api.answers["3"]  # the source recovers
    counts = fire_due_polls(app, t0 + timedelta(seconds=61))
    assert counts["fired"] == 4 and counts["failed"] == 0
    assert [r["query"].get("cursor") for r in api.requests[2:]] == ["3", "6"]  # not page 1
    assert _skus(flow_id) == [f"SKU-{n:03d}" for n in range(1, 8)]  # each item once
    state = _state(flow_id)
    assert state.cursor == "6" and state.last_error is None


def test_an_empty_page_with_a_cursor_fires_nothing_and_is_no_error(app, api, sink):
    """Reliability case 30: a change feed answers every page with a next cursor, an empty
    page too (nothing yet, nothing new): no run, no error, and the cursor is followed."""
    api.always_next = True
    flow_id = _flow(api, sink)
    t0 = utcnow()

    assert fire_due_polls(app, t0) == {"polled": 1, "fired": 0, "paused": 0, "failed": 0}
    assert _runs(flow_id) == []
    state = _state(flow_id)
    assert state.last_error is None and state.cursor == "0"

    api.add(*(_stock(n) for n in range(1, 5)))
    counts = fire_due_polls(app, t0 + timedelta(seconds=61))
    assert counts["fired"] == 4 and counts["failed"] == 0
    assert [r["query"].get("cursor") for r in api.requests[1:]] == ["0", "3", "4"]
    state = _state(flow_id)
    assert state.last_error is None and state.cursor == "4"

    # Caught up: the feed's page at the cursor is empty, with the same cursor.
    assert fire_due_polls(app, t0 + timedelta(seconds=122)) == {
        "polled": 1,
        "fired": 0,
        "paused": 0,
        "failed": 0,
    }
    assert api.requests[-1]["query"].get("cursor") == "4"
    assert len(_runs(flow_id)) == 4
    state = _state(flow_id)
    assert state.last_error is None and state.cursor == "4"

    api.add(_stock(5))
    assert fire_due_polls(app, t0 + timedelta(seconds=183))["fired"] == 1
    assert _skus(flow_id) == [f"SKU-{n:03d}" for n in range(1, 6)]


@pytest.mark.parametrize(
    "raw, why",
    [
        (b'{"items": [{"sku": "A", "qty": NaN}]}', "NaN is not valid JSON"),
        (b'{"items": [{"qty": Infinity}]}', "Infinity is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"items": ["\xff"]}', "not valid UTF-8"),
        (b"<html>busy</html>", "Expecting value"),
    ],
)
def test_a_page_that_is_not_strict_json_fails_the_poll_and_fires_nothing(app, api, sink, raw, why):
    api.add(_stock(1))
    flow_id = _flow(api, sink)
    api.raw_body = raw
    counts = fire_due_polls(app, utcnow())
    assert counts["failed"] == 1 and counts["fired"] == 0
    error = _state(flow_id).last_error
    assert "did not answer JSON" in error and why in error
    assert _runs(flow_id) == []


def test_a_bad_expression_is_a_readable_failure(app, api, sink):
    api.add(_stock(1))
    flow_id = _flow(api, sink, id="missing_field")
    fire_due_polls(app, utcnow())
    assert "the id expression 'missing_field' gave no usable id" in _state(flow_id).last_error
    assert _runs(flow_id) == []


# --- the connector alone ----------------------------------------------------------------


def _ctx(app: Any, api: PagedApi, **config: Any) -> ConnectorContext:
    connection_id = make_connection("poll_http", {"base_url": api.url})
    trigger = {"type": "poll_http", "connection_id": connection_id, "config": {**CONFIG, **config}}
    return poll_context(app, trigger)


def test_poll_returns_one_page_and_the_next_cursor(app, api):
    api.add(*(_stock(n) for n in range(1, 5)))
    page = HttpPollTrigger().poll(_ctx(app, api), None)
    assert [item.id for item in page.items] == ["SKU-001@1", "SKU-002@1", "SKU-003@1"]
    assert page.state == "3" and page.more is True
    last = HttpPollTrigger().poll(_ctx(app, api), "3")
    assert [item.id for item in last.items] == ["SKU-004@1"]
    assert last.state == "3" and last.more is False  # no next page: stay on this one


def test_check_reads_the_first_page(app, api):
    api.add(_stock(1), _stock(2))
    result = HttpPollTrigger().check(_ctx(app, api))
    assert result.ok and result.message.startswith("first page: 2 item(s)")


def test_check_failure_says_why(app, api):
    result = HttpPollTrigger().check(_ctx(app, api, path="/nowhere"))
    assert not result.ok and "HTTP 404" in result.message


@pytest.mark.slow
def test_a_dripping_source_is_cut_off_at_the_deadline_and_the_scheduler_goes_on(app, monkeypatch):
    """A poll runs in the scheduler: a source answering one byte at a time must not hold
    it (its deadline adds PAGE_TRANSFER_SECONDS for large pages; none here)."""
    from connectors import poll_http
    from tests.connectors.test_http_deadline import DEADLINE, MARGIN, DripServer

    monkeypatch.setattr(poll_http, "PAGE_TRANSFER_SECONDS", 0.0)
    server = DripServer("status")
    try:
        connection_id = make_connection(
            "poll_http", {"base_url": server.url(), "timeout_seconds": 1}
        )
        trigger = {"type": "poll_http", "connection_id": connection_id, "config": CONFIG}
        started = time.monotonic()
        with pytest.raises(RetryableConnectorError, match="total deadline exceeded after 4 s"):
            HttpPollTrigger().poll(poll_context(app, trigger), None)
        assert DEADLINE <= time.monotonic() - started < DEADLINE + MARGIN
        assert server.drip_ended.wait(3)  # the cut connection was closed
    finally:
        server.stop()
