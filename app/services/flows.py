"""Flows and their versions: drafts, submission and the owner's decision (the review gate)."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from sqlalchemy import func, select, update

from app import runtime
from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.extensions import db
from app.models import Connection, Flow, FlowVersion, Review, Role, User, VersionStatus
from app.models._types import utcnow
from app.services import audit, contracts, review_notify
from flows.definition import content_hash
from flows.validation import Problem, validate

# save_draft/submit_version without a contract argument leave the stored contract alone.
KEEP_CONTRACT: Any = object()


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:100] or "flow"


def _unique_slug(name: str) -> str:
    base = slugify(name)
    taken = set(db.session.execute(select(Flow.slug).where(Flow.slug.like(f"{base}%"))).scalars())
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def get_flow(flow_id: int) -> Flow:
    flow = db.session.get(Flow, flow_id)
    if flow is None:
        raise NotFound(f"flow {flow_id} does not exist")
    return flow


def list_flows(q: str | None = None) -> list[Flow]:
    stmt = select(Flow).order_by(Flow.name)
    if q:
        stmt = stmt.where(func.lower(Flow.name).contains(q.lower()))
    return list(db.session.execute(stmt).scalars())


def create_flow(data: dict[str, Any], actor: User) -> Flow:
    owner_id = data.get("owner_id") or actor.id
    if db.session.get(User, owner_id) is None:
        raise Invalid(f"user {owner_id} does not exist")
    flow = Flow(
        name=data["name"],
        slug=_unique_slug(data["name"]),
        description=data.get("description") or "",
        owner_id=owner_id,
    )
    db.session.add(flow)
    db.session.flush()
    audit.record(actor, "flow.created", "flow", flow.id, name=flow.name, slug=flow.slug)
    db.session.commit()
    return flow


def version_with_status(flow: Flow, status: VersionStatus) -> FlowVersion | None:
    return next((v for v in reversed(flow.versions) if v.status == status.value), None)


def get_version(flow_id: int, number: int) -> FlowVersion:
    version = db.session.execute(
        select(FlowVersion).where(FlowVersion.flow_id == flow_id, FlowVersion.number == number)
    ).scalar_one_or_none()
    if version is None:
        raise NotFound(f"flow {flow_id} has no version {number}")
    return version


def _connection_key(connection_id: int) -> str | None:
    row = db.session.get(Connection, connection_id)
    return None if row is None else row.connector_key


def problems_of(definition: Any) -> list[Problem]:
    return validate(definition, runtime.registry(), _connection_key)


def save_draft(
    flow_id: int,
    definition: dict[str, Any],
    revision: int | None,
    actor: User,
    allow_problems: bool = False,
    contract: Any = KEEP_CONTRACT,
) -> tuple[FlowVersion, list[Problem]]:
    """Create or update the flow's draft. Submitted versions are never touched: editing a
    flow whose only versions are submitted starts a new draft. With ``allow_problems`` (the
    editor's autosave) an incomplete draft is stored and its problems returned; submitting
    it is refused until they are fixed."""
    flow = get_flow(flow_id)
    problems = problems_of(definition)
    if problems and not allow_problems:
        raise Invalid(
            f"the definition has {len(problems)} problem(s)",
            problems=[p.to_dict() for p in problems],
        )
    if contract is not KEEP_CONTRACT:
        contracts.check_draft_contract(contract)
    draft = version_with_status(flow, VersionStatus.DRAFT)
    now = utcnow()
    if draft is None:
        number = (max((v.number for v in flow.versions), default=0)) + 1
        draft = FlowVersion(
            flow=flow,
            number=number,
            definition=definition,
            revision=1,
            content_hash=content_hash(definition),
            author_id=actor.id,
            status="draft",
            contributor_ids=[actor.id],
        )
        # Editing a live flow starts from its contract; the author adjusts what changed.
        live = version_with_status(flow, VersionStatus.LIVE)
        draft.contract = live.contract if live is not None else None
        db.session.add(draft)
        action = "flow.draft_created"
    else:
        if revision is not None and revision != draft.revision:
            raise Conflict(
                f"the draft is at revision {draft.revision}, you edited revision {revision}:"
                " reload it and apply your change again",
                current_revision=draft.revision,
            )
        # Sample tests do not change behaviour, but whoever writes them shapes the review:
        # they count as a contribution for the four-eyes rule too.
        changed = content_hash(definition) != draft.content_hash or definition.get(
            "tests"
        ) != draft.definition.get("tests")
        if changed and actor.id not in draft.contributor_ids:
            draft.contributor_ids = [*draft.contributor_ids, actor.id]
        draft.definition = definition
        draft.content_hash = content_hash(definition)
        draft.revision += 1
        draft.updated_at = now
        action = "flow.draft_saved"
    if contract is not KEEP_CONTRACT:
        contracts.save_contract(draft, contract, actor)
    db.session.flush()
    audit.record(actor, action, "flow_version", draft.id, flow_id=flow.id, number=draft.number)
    db.session.commit()
    return draft, problems


def update_layout(flow_id: int, number: int, layout: dict[str, Any], actor: User) -> FlowVersion:
    """Move boxes on any version, live or in review included: the layout is not behaviour, so
    it needs no new approval (the content hash, which the approval covers, stays the same)."""
    version = get_version(flow_id, number)
    definition = {**version.definition, "layout": layout}
    problems = [p for p in problems_of(definition) if p.path.startswith("/layout")]
    if problems:
        raise Invalid("the layout is invalid", problems=[p.to_dict() for p in problems])
    if content_hash(definition) != version.content_hash:  # pragma: no cover - layout only
        raise Conflict("a layout change must not change the flow's behaviour")
    version.definition = definition
    audit.record(
        actor, "flow.layout_changed", "flow_version", version.id, flow_id=flow_id, number=number
    )
    db.session.commit()
    return version


def submit_version(
    flow_id: int, number: int, actor: User, contract: Any = KEEP_CONTRACT
) -> FlowVersion:
    """Submit a draft (``contract``, if given, is stored on it first); the contract must be
    complete. Owners other than the author are notified (queued with the commit)."""
    version = get_version(flow_id, number)
    if version.status != VersionStatus.DRAFT.value:
        raise Conflict(f"version {number} is {version.status}; only a draft can be submitted")
    if contract is not KEEP_CONTRACT:
        contracts.save_contract(version, contract, actor)
    contracts.require_complete(version.contract)
    problems = problems_of(version.definition)
    if problems:
        raise Invalid(
            "the draft has problems; fix them before submitting",
            problems=[p.to_dict() for p in problems],
        )
    from app.services.review import refuse_failing_sample_tests  # imports this module

    refuse_failing_sample_tests(version)
    version.status = VersionStatus.IN_REVIEW.value
    version.submitted_at = utcnow()
    audit.record(
        actor, "flow.submitted", "flow_version", version.id, flow_id=flow_id, number=number
    )
    review_notify.submitted(version, actor)  # queued in this transaction
    db.session.commit()
    return version


def _decide(flow_id: int, number: int, actor: User) -> FlowVersion:
    # The role first: a refusal never depends on (nor reveals) whether the version exists.
    if actor.role != Role.OWNER.value:
        raise Forbidden("only an integration owner can approve or reject a version")
    version = get_version(flow_id, number)
    if actor.id == version.author_id or actor.id in (version.contributor_ids or []):
        # Separation of duties holds for every role, with no bypass.
        raise Forbidden("you are the author of this version; another owner must review it")
    if version.status != VersionStatus.IN_REVIEW.value:
        raise Conflict(f"version {number} is {version.status}, not in review")
    return version


def approve_version(flow_id: int, number: int, actor: User, comment: str = "") -> FlowVersion:
    """Approve and make live; the previously live version is retired in the same transaction."""
    version = _decide(flow_id, number, actor)
    from app.services.review import refuse_blocked_approval  # imports this module

    refuse_blocked_approval(version)  # failing guardrails or sample tests: 422
    now = utcnow()
    previous = version_with_status(version.flow, VersionStatus.LIVE)
    if previous is not None:
        previous.status = VersionStatus.RETIRED.value
    version.status = VersionStatus.LIVE.value
    version.approved_by_id = actor.id
    version.decided_at = version.live_since = now
    db.session.add(
        Review(version=version, reviewer_id=actor.id, decision="approved", comment=comment)
    )
    audit.record(
        actor,
        "flow.approved",
        "flow_version",
        version.id,
        flow_id=flow_id,
        number=number,
        retired=previous.number if previous is not None else None,
    )
    review_notify.decided(version, actor, "approved", comment)
    db.session.commit()
    return version


def reject_version(flow_id: int, number: int, actor: User, comment: str) -> FlowVersion:
    version = _decide(flow_id, number, actor)
    if not comment.strip():
        raise Invalid("a rejection needs a comment saying what to change")
    version.status = VersionStatus.REJECTED.value
    version.decided_at = utcnow()
    db.session.add(
        Review(version=version, reviewer_id=actor.id, decision="rejected", comment=comment)
    )
    audit.record(
        actor,
        "flow.rejected",
        "flow_version",
        version.id,
        flow_id=flow_id,
        number=number,
        comment=comment,
    )
    review_notify.decided(version, actor, "rejected", comment)
    db.session.commit()
    return version


def withdraw_version(flow_id: int, number: int, actor: User) -> FlowVersion:
    """The author (or a contributor) takes a version back out of review: it is a draft again,
    unless the flow already has another draft (a flow has at most one)."""
    version = get_version(flow_id, number)
    if actor.id != version.author_id and actor.id not in (version.contributor_ids or []):
        raise Forbidden("only the author or a contributor of this version can withdraw it")
    if version.status != VersionStatus.IN_REVIEW.value:
        raise Conflict(
            f"version {number} is {version.status}; only a version in review can be withdrawn"
        )
    other = version_with_status(version.flow, VersionStatus.DRAFT)
    if other is not None:
        raise Conflict(
            f"the flow already has a draft (version {other.number}) and a flow has one draft"
            f" at a time: submit or finish version {other.number} first, or carry your changes"
            f" over into it, instead of withdrawing version {number}",
            draft_version=other.number,
        )
    now = utcnow()
    # Compare-and-set: a decision taken meanwhile by an owner wins, the withdrawal is refused.
    moved = db.session.execute(
        update(FlowVersion)
        .where(FlowVersion.id == version.id, FlowVersion.status == VersionStatus.IN_REVIEW.value)
        .values(status=VersionStatus.DRAFT.value, submitted_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:
        db.session.rollback()
        raise Conflict(f"version {number} was decided meanwhile; it can no longer be withdrawn")
    audit.record(
        actor, "flow.withdrawn", "flow_version", version.id, flow_id=flow_id, number=number
    )
    db.session.commit()
    db.session.refresh(version)
    return version


def rollback_version(flow_id: int, number: int, actor: User, comment: str = "") -> dict[str, Any]:
    """Owners put a previously approved version live again in one transaction: the live one
    is retired, the target goes live, no new review. Intake keeps answering: every reader
    sees either the old or the new live version, never none."""
    if actor.role != Role.OWNER.value:
        raise Forbidden("only an integration owner can roll a flow back")
    target = get_version(flow_id, number)
    if target.status == VersionStatus.LIVE.value:
        raise Conflict(f"version {number} is already live")
    if target.status not in (VersionStatus.RETIRED.value, VersionStatus.APPROVED.value):
        raise Conflict(
            f"version {number} is {target.status}; only a version that was approved before"
            " (retired or approved) can be rolled back to"
        )
    current = version_with_status(target.flow, VersionStatus.LIVE)
    now = utcnow()
    if current is not None:
        retired = db.session.execute(
            update(FlowVersion)
            .where(FlowVersion.id == current.id, FlowVersion.status == VersionStatus.LIVE.value)
            .values(status=VersionStatus.RETIRED.value)
            .execution_options(synchronize_session=False)
        )
    revived = db.session.execute(
        update(FlowVersion)
        .where(
            FlowVersion.id == target.id,
            FlowVersion.status.in_([VersionStatus.RETIRED.value, VersionStatus.APPROVED.value]),
        )
        .values(status=VersionStatus.LIVE.value, live_since=now)
        .execution_options(synchronize_session=False)
    )
    if revived.rowcount != 1 or (current is not None and retired.rowcount != 1):
        db.session.rollback()
        raise Conflict("the flow's live version changed meanwhile; reload and try again")
    audit.record(
        actor,
        "flow.rolled_back",
        "flow_version",
        target.id,
        flow_id=flow_id,
        **{"from": current.number if current is not None else None, "to": number},
        comment=comment,
    )
    db.session.commit()
    db.session.refresh(target)
    if current is not None:
        db.session.refresh(current)
    return {
        "flow_id": flow_id,
        "from_version": current.number if current is not None else None,
        "to_version": number,
        "version": target,
    }
