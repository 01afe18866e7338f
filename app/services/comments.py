"""The review thread of a flow version (everyone signed in may read and write) and the
review queue."""

from __future__ import annotations

from sqlalchemy import select

from app.errors import Invalid
from app.extensions import db
from app.models import FlowVersion, User, VersionComment
from app.services import audit
from app.services.flows import get_version

MAX_COMMENT_LENGTH = 10_000


def list_comments(flow_id: int, number: int) -> list[VersionComment]:
    version = get_version(flow_id, number)
    return list(
        db.session.execute(
            select(VersionComment)
            .where(VersionComment.version_id == version.id)
            .order_by(VersionComment.id)
        ).scalars()
    )


def add_comment(flow_id: int, number: int, body: str, actor: User) -> VersionComment:
    text = body.strip()
    if not text:
        raise Invalid("a comment cannot be empty")
    if len(text) > MAX_COMMENT_LENGTH:
        raise Invalid(f"a comment has at most {MAX_COMMENT_LENGTH} characters")
    version = get_version(flow_id, number)
    comment = VersionComment(version_id=version.id, author_id=actor.id, body=text)
    db.session.add(comment)
    db.session.flush()
    audit.record(
        actor,
        "flow.commented",
        "flow_version",
        version.id,
        flow_id=flow_id,
        number=number,
        comment_id=comment.id,
    )
    db.session.commit()
    return comment


def versions_by_status(status: str) -> list[FlowVersion]:
    """Versions of every flow with ``status`` (the review queue: in_review), oldest first."""
    return list(
        db.session.execute(
            select(FlowVersion)
            .where(FlowVersion.status == status)
            .order_by(FlowVersion.submitted_at, FlowVersion.id)
        ).scalars()
    )
