"""A user's in-app notifications: the list (newest first), unread count, mark as read."""

from __future__ import annotations

from sqlalchemy import func, select, update

from app.errors import NotFound
from app.extensions import db
from app.models import Notification, User
from app.models._types import utcnow


def list_for(user: User, *, unread_only: bool = False, limit: int = 50) -> dict[str, object]:
    stmt = select(Notification).where(Notification.user_id == user.id)
    if unread_only:
        stmt = stmt.where(Notification.read_at.is_(None))
    items = list(db.session.execute(stmt.order_by(Notification.id.desc()).limit(limit)).scalars())
    unread = db.session.execute(
        select(func.count())
        .select_from(Notification)
        .where(Notification.user_id == user.id, Notification.read_at.is_(None))
    ).scalar_one()
    return {"items": items, "unread": unread}


def mark_read(user: User, notification_id: int) -> Notification:
    row = db.session.get(Notification, notification_id)
    if row is None or row.user_id != user.id:  # someone else's is as good as absent
        raise NotFound(f"notification {notification_id} does not exist")
    if row.read_at is None:
        row.read_at = utcnow()
        db.session.commit()
    return row


def mark_all_read(user: User) -> int:
    result = db.session.execute(
        update(Notification)
        .where(Notification.user_id == user.id, Notification.read_at.is_(None))
        .values(read_at=utcnow())
    )
    db.session.commit()
    return int(result.rowcount or 0)
