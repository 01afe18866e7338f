"""SQLAlchemy models, one module per aggregate; imported here so Alembic sees them all."""

from app.models.alert import Alert, AlertNotification, AlertRule, AlertState
from app.models.audit import AuditEvent
from app.models.comment import VersionComment
from app.models.connection import Connection
from app.models.demo import DemoOmsOrder
from app.models.flow import Flow, FlowVersion, Review, VersionStatus
from app.models.notification import Notification
from app.models.outbox import OutboxMessage, OutboxStatus
from app.models.poll_state import PollState
from app.models.reconciliation import ReconciliationCheck, ReconciliationReport
from app.models.run import Delivery, Run, RunStep
from app.models.run_key import RunKey
from app.models.run_stats import RunStats, RunStatsWatermark
from app.models.system import Criticality, System, SystemKind
from app.models.user import ApiToken, Role, User

__all__ = [
    "Alert",
    "AlertNotification",
    "AlertRule",
    "AlertState",
    "ReconciliationCheck",
    "ReconciliationReport",
    "ApiToken",
    "AuditEvent",
    "Connection",
    "Criticality",
    "Delivery",
    "DemoOmsOrder",
    "Flow",
    "FlowVersion",
    "Notification",
    "OutboxMessage",
    "OutboxStatus",
    "PollState",
    "Review",
    "Role",
    "Run",
    "RunStep",
    "RunKey",
    "RunStats",
    "RunStatsWatermark",
    "System",
    "SystemKind",
    "User",
    "VersionComment",
    "VersionStatus",
]
