"""SQLAlchemy models, one module per aggregate; imported here so Alembic sees them all."""

from app.models.audit import AuditEvent
from app.models.connection import Connection
from app.models.demo import DemoOmsOrder
from app.models.flow import Flow, FlowVersion, Review, VersionStatus
from app.models.run import Delivery, Run, RunStep
from app.models.system import Criticality, System, SystemKind
from app.models.user import ApiToken, Role, User

__all__ = [
    "ApiToken",
    "AuditEvent",
    "Connection",
    "Criticality",
    "Delivery",
    "DemoOmsOrder",
    "Flow",
    "FlowVersion",
    "Review",
    "Role",
    "Run",
    "RunStep",
    "System",
    "SystemKind",
    "User",
    "VersionStatus",
]
