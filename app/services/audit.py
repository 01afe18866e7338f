"""The audit log: append-only and hash-chained.

Every event carries ``prev_hash`` (the ``hash`` of the event before it, ``GENESIS_HASH`` for the
first) and ``hash`` = SHA-256 over a canonical JSON document of ``prev_hash`` and the event's
id-independent fields (:func:`event_hash`). Changing, removing or reordering a stored row breaks
the chain at that row (or, for a removed row, at the one after it); :func:`verify_chain` walks
it in id order and names the first broken link.

Appending must read the newest hash and insert the new row without another writer slipping in
between, or two events would chain to the same predecessor (a fork). :func:`record` therefore
serialises appenders for the rest of the transaction:

- PostgreSQL: ``pg_advisory_xact_lock(CHAIN_LOCK_KEY)``, released at commit or rollback. The
  read that follows is a new statement, so under READ COMMITTED (the default we use) it sees
  every chain event committed before the lock was granted.
- SQLite: a single writer at a time is guaranteed by the database lock, but the Python driver
  only opens a transaction at the first INSERT/UPDATE/DELETE, so a plain SELECT of the newest
  hash would run outside it. When the connection has no write transaction yet, ``record``
  starts one with ``BEGIN IMMEDIATE`` (takes the write lock now, waits up to the driver's busy
  timeout otherwise); when it already has one, it already holds the write lock.

Both locks are held until the caller commits, so audited writes are serialised from their
first ``record`` call on: call it last, right before ``commit``. As a last line of defence
``prev_hash`` is unique: a fork would be refused by the database rather than stored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select, text

from app.extensions import db
from app.models import AuditEvent, User
from app.models._types import utcnow
from app.models.audit import GENESIS_HASH

# Any constant bigint works; it only has to be the same in every process ("FlowAudt").
CHAIN_LOCK_KEY = 0x466C6F7741756474


def _normalised(value: Any) -> Any:
    """JSON data as it reads back from either database: integral floats become ints (JSONB
    keeps ``1000.0`` as the number ``1000``), tuples lists, keys strings."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {str(k): _normalised(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalised(v) for v in value]
    raise TypeError(f"audit detail values must be JSON data, not {type(value).__name__}")


def canonical_json(
    *,
    prev_hash: str,
    actor_id: int | None,
    actor_label: str,
    action: str,
    object_type: str,
    object_id: str | None,
    detail: dict[str, Any],
    created_at: datetime,
) -> bytes:
    """The bytes an event's hash covers: sorted keys, no whitespace, ASCII, no NaN."""
    document = {
        "prev_hash": prev_hash,
        "actor_id": actor_id,
        "actor_label": actor_label,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "detail": _normalised(detail or {}),
        "created_at": created_at.isoformat(timespec="microseconds"),
    }
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def event_hash(row: Any) -> str:
    """SHA-256 (hex) of an event, from anything with the event's attributes."""
    return hashlib.sha256(
        canonical_json(
            prev_hash=row.prev_hash,
            actor_id=row.actor_id,
            actor_label=row.actor_label,
            action=row.action,
            object_type=row.object_type,
            object_id=row.object_id,
            detail=row.detail,
            created_at=row.created_at,
        )
    ).hexdigest()


def _lock_chain(connection: Connection) -> None:
    """Serialise chain appends until the end of the current transaction (see module doc)."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})
    elif dialect == "sqlite":
        raw = connection.connection.dbapi_connection
        if raw is not None and not raw.in_transaction:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise RuntimeError(f"no audit chain lock for {dialect}")


def _last_hash() -> str:
    last = db.session.execute(
        select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    ).scalar_one_or_none()
    return last or GENESIS_HASH


def record(
    actor: User | None, action: str, object_type: str, object_id: Any, **detail: Any
) -> AuditEvent:
    """Append an audit event to the current transaction (committed with the change it
    records), chained to the newest event. Holds the chain lock until commit/rollback."""
    session = db.session
    _lock_chain(session.connection())
    session.flush()  # rows this transaction added earlier get their ids before ours
    event = AuditEvent(
        actor_id=actor.id if actor is not None else None,
        actor_label=actor.email if actor is not None else "system",
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        detail=_normalised(detail),
        created_at=utcnow(),
        prev_hash=_last_hash(),
    )
    event.hash = event_hash(event)
    session.add(event)
    session.flush()
    return event


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int  # events read, up to and including the first broken one
    first_broken_id: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "first_broken_id": self.first_broken_id}


_CHAIN_COLUMNS = (
    AuditEvent.id,
    AuditEvent.prev_hash,
    AuditEvent.hash,
    AuditEvent.actor_id,
    AuditEvent.actor_label,
    AuditEvent.action,
    AuditEvent.object_type,
    AuditEvent.object_id,
    AuditEvent.detail,
    AuditEvent.created_at,
)


def verify_chain(batch_size: int = 1000) -> ChainReport:
    """Walk the chain in id order; the first row whose ``prev_hash`` is not its predecessor's
    ``hash``, or whose ``hash`` does not match its content, is the first broken link.

    A chain can only prove what it holds: events removed from the *end* leave a shorter chain
    that still verifies (compare ``checked`` with a count noted elsewhere to detect that)."""
    expected_prev, checked, after = GENESIS_HASH, 0, 0
    while True:
        rows = db.session.execute(
            select(*_CHAIN_COLUMNS)
            .where(AuditEvent.id > after)
            .order_by(AuditEvent.id)
            .limit(batch_size)
        ).all()
        if not rows:
            return ChainReport(ok=True, checked=checked, first_broken_id=None)
        for row in rows:
            checked += 1
            if row.prev_hash != expected_prev or event_hash(row) != row.hash:
                return ChainReport(ok=False, checked=checked, first_broken_id=row.id)
            expected_prev = row.hash
        after = rows[-1].id


def _naive_utc(value: datetime | None) -> datetime | None:
    """Timestamps are stored as naive UTC; accept aware ones from the wire."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def list_events(
    *,
    action: str | None = None,
    actor: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[AuditEvent], int]:
    """Newest first. ``actor`` is a user id (digits) or an actor label (an e-mail address or
    ``system``, case-insensitive); ``since`` is inclusive, ``until`` exclusive."""
    stmt = select(AuditEvent)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    if actor:
        if actor.isdigit():
            stmt = stmt.where(AuditEvent.actor_id == int(actor))
        else:
            stmt = stmt.where(func.lower(AuditEvent.actor_label) == actor.strip().lower())
    if object_type:
        stmt = stmt.where(AuditEvent.object_type == object_type)
    if object_id:
        stmt = stmt.where(AuditEvent.object_id == object_id)
    if since is not None:
        stmt = stmt.where(AuditEvent.created_at >= _naive_utc(since))
    if until is not None:
        stmt = stmt.where(AuditEvent.created_at < _naive_utc(until))
    total = db.session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    items = db.session.execute(
        stmt.order_by(AuditEvent.id.desc()).limit(limit).offset(offset)
    ).scalars()
    return list(items), total
