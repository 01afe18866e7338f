"""Poll triggers (``poll_http``, ``poll_sql``), fired by the scheduler, and trigger pauses.

Once per scheduler beat, ``fire_due_polls`` looks at every live version whose trigger is a
poll. A flow is polled when its ``PollState.next_poll_at`` has passed, by the one scheduler
that wins the claim (a conditional UPDATE of ``claimed_until``: with any number of schedulers,
one poll at a time per flow). A poll reads pages from the saved cursor:

1. back-pressure first: past ``FLOWGATE_MAX_BACKLOG`` waiting runs (``intake.check_backlog``)
   the poll is postponed to the next interval and the reason kept in ``paused_reason``;
2. each item of a page is recorded through ``intake.record_run`` (committed one by one) with
   the event id ``poll:<flow id>:<item id>``, unique per flow: an item seen again is a
   duplicate, never a second run;
3. only then the page's cursor is saved (a crash in between re-reads the page: see 2).

The first poll of a trigger with ``seed_on_first_poll`` reads every page without recording
runs. A changed source (another connection, table, path or expression) starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from app import runtime
from app.errors import Invalid
from app.extensions import db
from app.models import Connection, Flow, FlowVersion, PollState, VersionStatus
from app.models._types import utcnow
from app.services.intake import TooManyRequests, check_backlog, record_run
from connectors.base import ConnectorContext, ConnectorError, Poller

log = logging.getLogger("flowgate.polling")

POLL_TYPES = ("poll_http", "poll_sql")
TRIGGER_KIND = "poll"
SEEN_IDS_KEPT = 5_000
SEED_MAX_PAGES = 10_000
# Settings that change how often or how much is read, not what: they keep the cursor.
_NOT_SOURCE = ("interval_seconds", "max_pages_per_poll", "page_size", "seed_on_first_poll")


def fingerprint(trigger: dict[str, Any]) -> str:
    """What identifies a poll's source: a new one starts from an empty cursor."""
    config = {k: v for k, v in (trigger.get("config") or {}).items() if k not in _NOT_SOURCE}
    source = {"type": trigger.get("type"), "connection": trigger.get("connection_id"), **config}
    return hashlib.sha256(json.dumps(source, sort_keys=True, default=str).encode()).hexdigest()


def _live_polls() -> list[tuple[Flow, FlowVersion]]:
    rows = db.session.execute(
        select(Flow, FlowVersion)
        .join(FlowVersion, FlowVersion.flow_id == Flow.id)
        .where(FlowVersion.status == VersionStatus.LIVE.value)
        .order_by(Flow.id)
    ).all()
    return [
        (flow, version)
        for flow, version in rows
        if (version.definition.get("trigger") or {}).get("type") in POLL_TYPES
    ]


def state_for(flow_id: int, trigger_type: str) -> PollState:
    """The flow's state row, created on first use (a concurrent creator wins, we re-read)."""
    row = db.session.execute(
        select(PollState).where(PollState.flow_id == flow_id)
    ).scalar_one_or_none()
    if row is not None:
        return row
    db.session.add(PollState(flow_id=flow_id, trigger_type=trigger_type, fingerprint=""))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
    return db.session.execute(select(PollState).where(PollState.flow_id == flow_id)).scalar_one()


def _claim(flow_id: int, now: datetime, lease: timedelta) -> bool:
    """Take the flow's poll if it is due and nobody holds it; one winner across schedulers."""
    result = db.session.execute(
        update(PollState)
        .where(
            PollState.flow_id == flow_id,
            or_(PollState.claimed_until.is_(None), PollState.claimed_until < now),
            or_(PollState.next_poll_at.is_(None), PollState.next_poll_at <= now),
        )
        .values(claimed_until=now + lease)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return bool(getattr(result, "rowcount", 0) == 1)


def record_pause(flow_id: int, trigger_type: str, reason: str, now: datetime) -> None:
    """Keep why a scheduled trigger did not fire (back-pressure); logged when it starts."""
    row = state_for(flow_id, trigger_type)
    if row.paused_reason is None:
        log.warning("triggers.paused flow=%s trigger=%s reason=%s", flow_id, trigger_type, reason)
    row.paused_reason = reason[:1000]
    row.paused_at = now
    db.session.commit()


def clear_pause(flow_id: int) -> None:
    """Forget a pause once the trigger fires again."""
    result = db.session.execute(
        update(PollState)
        .where(PollState.flow_id == flow_id, PollState.paused_reason.is_not(None))
        .values(paused_reason=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if getattr(result, "rowcount", 0):
        log.info("triggers.resumed flow=%s", flow_id)


def poll_context(app: Flask, trigger: dict[str, Any]) -> ConnectorContext:
    """The connector context of a poll trigger: its connection, secrets and the evaluator."""
    trigger_type = str(trigger.get("type"))
    connection_config: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    connection_id = trigger.get("connection_id")
    if connection_id is not None:
        connection = db.session.get(Connection, connection_id)
        if connection is None or connection.connector_key != trigger_type:
            raise ConnectorError(f"connection {connection_id} is not a {trigger_type} connection")
        connection_config = dict(connection.config or {})
        try:
            secrets = runtime.secret_box(app).decrypt(connection.secrets_encrypted)
        except ValueError as exc:
            raise ConnectorError(str(exc)) from None
    return ConnectorContext(
        connection_config=connection_config,
        secrets=secrets,
        step_config=dict(trigger.get("config") or {}),
        logger=logging.getLogger(f"flowgate.connector.{trigger_type}"),
        http=runtime.http_session(app),
        egress=runtime.egress_policy(app),
        evaluate=runtime.connector_evaluator(app),
    )


def fire_due_polls(app: Flask, now: datetime | None = None) -> dict[str, int]:
    """Poll every due flow once (see module doc); returns counts. Needs an app context."""
    now = now or utcnow()
    lease = timedelta(seconds=float(app.config.get("FLOWGATE_POLL_LEASE_SECONDS", 300)))
    counts = {"polled": 0, "fired": 0, "paused": 0, "failed": 0}
    for flow, version in _live_polls():
        flow_id = flow.id
        trigger = dict(version.definition.get("trigger") or {})
        try:
            state = state_for(flow_id, str(trigger["type"]))
            if _not_due(state, now) or not _claim(flow_id, now, lease):
                continue
            # record_run commits per item; detached, the flow and version are not re-read
            # from the database after every commit (it only reads their columns).
            for row in (flow, version):
                db.session.refresh(row)
                db.session.expunge(row)
            result = _poll(app, flow, version, trigger, now)
        except Exception:  # one broken poll must not stop the others
            db.session.rollback()
            counts["failed"] += 1
            log.exception("polling.failed flow=%s", flow_id)
            _release(flow_id, now, trigger)
            continue
        counts["polled"] += 1
        counts["fired"] += result["fired"]
        counts["paused"] += result["paused"]
        counts["failed"] += result["failed"]
    return counts


def _not_due(state: PollState, now: datetime) -> bool:
    """Read without a write: most beats find nothing due (the claim re-checks both)."""
    return (state.next_poll_at is not None and state.next_poll_at > now) or (
        state.claimed_until is not None and state.claimed_until >= now
    )


def _interval(trigger: dict[str, Any]) -> timedelta:
    seconds = (trigger.get("config") or {}).get("interval_seconds", 60)
    return timedelta(seconds=max(1.0, float(seconds)))


def _release(flow_id: int, now: datetime, trigger: dict[str, Any]) -> None:
    try:
        db.session.execute(
            update(PollState)
            .where(PollState.flow_id == flow_id)
            .values(claimed_until=None, next_poll_at=now + _interval(trigger))
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("polling.release_failed flow=%s", flow_id)


def _poll(
    app: Flask, flow: Flow, version: FlowVersion, trigger: dict[str, Any], now: datetime
) -> dict[str, int]:
    flow_id = flow.id
    config = dict(trigger.get("config") or {})
    row = db.session.execute(select(PollState).where(PollState.flow_id == flow_id)).scalar_one()
    source = fingerprint(trigger)
    if row.fingerprint != source:
        row.fingerprint, row.cursor, row.seen_ids, row.polls = source, None, None, 0
        row.trigger_type = str(trigger["type"])
        db.session.commit()
    seeding = row.polls == 0 and bool(config.get("seed_on_first_poll"))
    resume_now = False
    result = {"fired": 0, "paused": 0, "failed": 0}
    error: str | None = None
    try:
        connector = runtime.registry(app).create(str(trigger["type"]))
        if not isinstance(connector, Poller):
            raise ConnectorError(f"{trigger['type']} is not a poll trigger")
        ctx = poll_context(app, trigger)
        pages = SEED_MAX_PAGES if seeding else int(config.get("max_pages_per_poll", 10))
        resume_now = _read_pages(app, (flow, version), connector, ctx, row, seeding, pages, result)
        if row.paused_reason is not None:
            row.paused_reason = None
            log.info("triggers.resumed flow=%s", flow_id)
    except TooManyRequests as exc:
        db.session.rollback()
        result["paused"] += 1
        if row.paused_reason is None:
            log.warning("triggers.paused flow=%s trigger=poll reason=%s", flow_id, exc)
        row.paused_reason, row.paused_at = f"backlog: {exc}", now
    except ConnectorError as exc:
        db.session.rollback()
        result["failed"] += 1
        error = exc.message[:2000]
        log.warning("polling.source_failed flow=%s error=%s", flow_id, error)
    row.last_error = error
    if error is None and not resume_now:  # a failed or cut first poll: seeding goes on
        row.polls = (row.polls or 0) + 1
    row.last_polled_at = now
    row.next_poll_at = now if resume_now else now + _interval(trigger)
    row.claimed_until = None
    db.session.commit()
    if result["fired"] or seeding:
        log.info("polling.polled flow=%s fired=%d seeded=%s", flow_id, result["fired"], seeding)
    return result


def _read_pages(
    app: Flask,
    target: tuple[Flow, FlowVersion],
    connector: Poller,
    ctx: ConnectorContext,
    row: PollState,
    seeding: bool,
    pages: int,
    result: dict[str, int],
) -> bool:
    """Read up to ``pages`` pages; True when cut short by the time budget (more to read).

    One poll must not hold up the scheduler's beat (schedules would fire late): past the
    budget it stops between pages and the rest is read on the next beat.
    """
    flow, version = target
    budget = max(1.0, float(app.config["FLOWGATE_SWEEP_INTERVAL_SECONDS"]))
    started = time.monotonic()
    for _ in range(pages):
        if not seeding:
            # intake caches the count for a second; a page may have just added to it.
            check_backlog(flow.id, fresh=True)
        if not _one_page(flow, version, connector, ctx, row, seeding, result):
            return False
        if time.monotonic() - started > budget:
            return True
    return False


def _one_page(
    flow: Flow,
    version: FlowVersion,
    connector: Poller,
    ctx: ConnectorContext,
    row: PollState,
    seeding: bool,
    result: dict[str, int],
) -> bool:
    """Read one page, record its new items, then save the cursor; whether to read on."""
    requested = row.cursor
    page = connector.poll(ctx, requested)
    seen = set(row.seen_ids or [])
    fired = 0
    for item in page.items:
        if item.id in seen:
            continue
        seen.add(item.id)
        if seeding:
            continue
        try:
            accepted = record_run(
                flow,
                version,
                trigger_kind=TRIGGER_KIND,
                message=item.message,
                event_id=f"{TRIGGER_KIND}:{flow.id}:{item.id}",
            )
        except Invalid:
            # Same id, another body: the id does not name a change; never fire it twice.
            db.session.rollback()
            log.warning("polling.changed_item_ignored flow=%s item=%s", flow.id, item.id)
            continue
        if not accepted.duplicate:
            fired += 1
    # The page's runs are committed (record_run commits each): now the cursor may move.
    if page.state == requested:  # the same page again next time: remember what it held
        ids = [*(row.seen_ids or []), *(item.id for item in page.items)]
        row.seen_ids = list(dict.fromkeys(ids))[-SEEN_IDS_KEPT:]
    else:
        row.seen_ids = []
    row.cursor = page.state
    row.fired = (row.fired or 0) + fired
    result["fired"] += fired
    db.session.commit()
    return page.more
