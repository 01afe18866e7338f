"""SQL implementations of the engine's ports (``flows.ports``); every method commits.

Each write commits at once because the ledger must survive a ``kill -9`` at any point: an
attempt is recorded as ``sending`` before the call and ``acknowledged`` after it.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, delete, func, or_, select, update

from app.crypto import SecretBox
from app.extensions import db
from app.models import Connection, Delivery, Flow, FlowVersion, Run, RunStep
from app.models._types import utcnow
from connectors.base import SendResult
from flows.ports import ClaimedRun, DeliveryRecord, ResolvedConnection
from flows.results import DeliveryStatus, RunResult, RunStatus


class SqlConnectionResolver:
    def __init__(self, box: SecretBox) -> None:
        self.box = box

    def resolve(self, connection_id: int) -> ResolvedConnection | None:
        row = db.session.get(Connection, connection_id)
        if row is None:
            return None
        return ResolvedConnection(
            connector_key=row.connector_key,
            config=dict(row.config or {}),
            secrets=self.box.decrypt(row.secrets_encrypted),
        )


class SqlDeliveryLedger:
    def __init__(self, lease_seconds: float) -> None:
        self.lease_seconds = lease_seconds

    def _row(self, run_id: int, step_id: str) -> Delivery | None:
        return db.session.execute(
            select(Delivery).where(Delivery.run_id == run_id, Delivery.step_id == step_id)
        ).scalar_one_or_none()

    def get(self, run_id: int, step_id: str) -> DeliveryRecord | None:
        row = self._row(run_id, step_id)
        return None if row is None else DeliveryRecord(DeliveryStatus(row.status), row.attempts)

    def begin(self, run_id: int, step_id: str, idempotency_key: str) -> int:
        now = utcnow()
        row = self._row(run_id, step_id)
        if row is None:
            row = Delivery(run_id=run_id, step_id=step_id, idempotency_key=idempotency_key)
            db.session.add(row)
        row.attempts = (row.attempts or 0) + 1
        row.status = DeliveryStatus.SENDING.value
        row.updated_at = now
        # A delivery may take up to its timeout: keep the run's lease ahead of it.
        db.session.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(lease_until=now + timedelta(seconds=self.lease_seconds))
        )
        attempts = row.attempts  # read before the commit expires the row (no extra SELECT)
        db.session.commit()
        return attempts

    def _update(self, run_id: int, step_id: str, **values: object) -> None:
        # One UPDATE by the natural key: the row exists since ``begin`` committed it.
        db.session.execute(
            update(Delivery)
            .where(Delivery.run_id == run_id, Delivery.step_id == step_id)
            .values(updated_at=utcnow(), **values)
        )
        db.session.commit()

    def acknowledge(self, run_id: int, step_id: str, result: SendResult) -> None:
        self._update(
            run_id,
            step_id,
            status=DeliveryStatus.ACKNOWLEDGED.value,
            response_code=result.status_code,
            response_excerpt=result.response_excerpt,
            last_error=None,
            acknowledged_at=utcnow(),
        )

    def fail(
        self,
        run_id: int,
        step_id: str,
        *,
        status: DeliveryStatus,
        error: str,
        response_code: int | None,
        response_excerpt: str,
    ) -> None:
        self._update(
            run_id,
            step_id,
            status=status.value,
            last_error=error,
            response_code=response_code,
            response_excerpt=response_excerpt,
        )


class SqlRunStore:
    def claim(self, run_id: int, lease_seconds: float) -> ClaimedRun | None:
        now = utcnow()
        claimable = or_(
            Run.status == RunStatus.QUEUED.value,
            and_(Run.status == RunStatus.RUNNING.value, Run.lease_until < now),
        )
        result = db.session.execute(
            update(Run)
            .where(Run.id == run_id, claimable)
            .values(
                status=RunStatus.RUNNING.value,
                attempts=Run.attempts + 1,
                lease_until=now + timedelta(seconds=lease_seconds),
                started_at=func.coalesce(Run.started_at, now),
            )
        )
        db.session.commit()
        if result.rowcount != 1:
            return None
        row = db.session.execute(
            select(
                Run.attempts,
                Run.payload,
                Run.received_at,
                Run.business_key,
                FlowVersion.definition,
                Flow.slug,
            )
            .join(FlowVersion, FlowVersion.id == Run.flow_version_id)
            .join(Flow, Flow.id == Run.flow_id)
            .where(Run.id == run_id)
        ).one()
        age = max(0.0, (now - row.received_at).total_seconds())
        return ClaimedRun(
            run_id,
            row.attempts,
            row.payload,
            row.definition,
            age,
            flow=row.slug,
            business_key=row.business_key,
        )

    def extend_lease(self, run_id: int, lease_seconds: float) -> None:
        db.session.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
        )
        db.session.commit()

    def finish(self, claimed: ClaimedRun, result: RunResult) -> bool:
        now = utcnow()
        values: dict[str, object] = {
            "status": result.status.value,
            "reason": result.reason,
            "lease_until": None,
            "next_attempt_at": None,
        }
        if result.status == RunStatus.RETRYING:
            values["next_attempt_at"] = now + timedelta(seconds=result.retry_in_seconds or 1)
        else:
            values["finished_at"] = now
        fenced = db.session.execute(
            update(Run)
            .where(
                Run.id == claimed.run_id,
                Run.status == RunStatus.RUNNING.value,
                Run.attempts == claimed.attempts,
            )
            .values(**values)
        )
        if fenced.rowcount != 1:
            db.session.rollback()
            return False
        db.session.execute(delete(RunStep).where(RunStep.run_id == claimed.run_id))
        db.session.add_all(
            RunStep(
                run_id=claimed.run_id,
                position=position,
                step_id=step.step_id,
                status=step.status.value,
                input=step.input,
                output=step.output,
                error=step.error,
                duration_ms=step.duration_ms,
                attempt=claimed.attempts,
            )
            for position, step in enumerate(result.steps)
        )
        db.session.commit()
        return True
