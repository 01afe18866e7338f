from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models._types import JSONType, utcnow
from app.models.flow import Flow, FlowVersion


class Run(db.Model):
    """The ledger of record: one row per accepted message, committed before we answer 2xx."""

    __tablename__ = "runs"
    __table_args__ = (
        # Intake dedupe is this constraint, not a check-then-insert race.
        UniqueConstraint("flow_id", "idempotency_key", name="uq_runs_flow_idempotency_key"),
        Index("ix_runs_status_next_attempt", "status", "next_attempt_at"),
        Index("ix_runs_flow_received", "flow_id", "received_at"),
        # Backlog checks at intake and /metrics counts per flow and status use the
        # (flow_id, status, finished_at) index below (app/models/run_key.py). Every index
        # here is written again on each status change (claim, finish: no HOT update), so
        # an index that is the prefix of another one is not kept (migration 0015).
        # Latency windows in /metrics and retention scans.
        Index("ix_runs_finished_at", "finished_at"),
        # The batch claim's order over queued runs only (migration 0017): a claim reads
        # its batch, not the whole backlog. The claim writes 'queued' inline so that a
        # prepared (generic) plan can use this partial index.
        Index(
            "ix_runs_queued_claim",
            "crash_count",
            "id",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
        # Run ids are part of idempotency keys: SQLite must never reuse one after a delete.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    flow_id: Mapped[int] = mapped_column(ForeignKey("flows.id", ondelete="CASCADE"))
    flow_version_id: Mapped[int] = mapped_column(ForeignKey("flow_versions.id", ondelete="CASCADE"))
    trigger_kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[Any] = mapped_column(JSONType)
    payload_hash: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    business_key: Mapped[str | None] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(20))  # (status, next_attempt_at) index
    attempts: Mapped[int] = mapped_column(default=0)  # claims (fencing token), not failures
    # Leases lost (the worker was killed or hung), counted by the sweep and by a claim that
    # takes over an expired lease: the crash budget (FLOWGATE_MAX_RUN_ATTEMPTS). Waiting on
    # an open breaker re-claims a run often and counts only in ``attempts``.
    crash_count: Mapped[int] = mapped_column(default=0, server_default="0")
    reason: Mapped[str | None] = mapped_column(Text)
    # (received_at, flow_id, status) index: app/models/run_key.py
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    enqueued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    # Dead-letter replays: how often, when last, and the version the message was received
    # with while a replay on the live version has repointed ``flow_version_id`` (else None).
    replays: Mapped[int] = mapped_column(default=0, server_default="0")
    replayed_at: Mapped[datetime | None]
    original_version_id: Mapped[int | None]
    # Set by retention (app.services.retention) when payload and step I/O were pruned.
    pruned_at: Mapped[datetime | None]

    flow: Mapped[Flow] = relationship()
    version: Mapped[FlowVersion] = relationship()
    steps: Mapped[list[RunStep]] = relationship(
        back_populates="run", order_by="RunStep.position", cascade="all, delete-orphan"
    )
    deliveries: Mapped[list[Delivery]] = relationship(
        back_populates="run", order_by="Delivery.id", cascade="all, delete-orphan"
    )


class RunStep(db.Model):
    """One step's record for the latest attempt of a run."""

    __tablename__ = "run_steps"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int]
    step_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    # A step's input is nearly always the run's payload or an earlier step's output (a
    # filter, a map and a delivery of the same order): then only a reference is stored,
    # ``input_ref`` = "payload" or "step:<position>", and ``stored_input`` stays NULL. That
    # halves the JSON a worker encodes per run and the bytes PostgreSQL writes for it.
    # Read ``input``, which resolves the reference.
    stored_input: Mapped[Any] = mapped_column("input", JSONType, nullable=True)
    input_ref: Mapped[str | None] = mapped_column(String(16), nullable=True)
    output: Mapped[Any] = mapped_column(JSONType, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    duration_ms: Mapped[float] = mapped_column(default=0.0)
    attempt: Mapped[int] = mapped_column(default=1)

    run: Mapped[Run] = relationship(back_populates="steps")

    @property
    def input(self) -> Any:
        ref = self.input_ref
        if ref is None:
            return self.stored_input
        if ref == INPUT_FROM_PAYLOAD:
            return self.run.payload
        position = int(ref.removeprefix(INPUT_FROM_STEP))
        for step in self.run.steps:
            if step.position == position:
                return step.output
        return None  # not reachable for rows the worker wrote: the step is in the same run


INPUT_FROM_PAYLOAD = "payload"
INPUT_FROM_STEP = "step:"


class Delivery(db.Model):
    """One destination effect per (run, deliver step); its key is the same on every attempt."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("run_id", "step_id", name="uq_deliveries_run_step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step_id: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20), index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    response_code: Mapped[int | None]
    response_excerpt: Mapped[str] = mapped_column(Text, default="")
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None]

    run: Mapped[Run] = relationship(back_populates="deliveries")
