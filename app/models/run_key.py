"""Search keys of a run: the identifiers support staff paste (order number, SKU, e-mail).

Why a table and not a GIN/trigram index on ``runs.payload``: one run carries many SKUs and
an e-mail besides its business key, and the lookup must be exact, fast and the same on
SQLite and PostgreSQL. A JSONB ``@>`` GIN index needs the payload's shape in the query, a
pg_trgm index on ``payload::text`` needs an extension, is PostgreSQL-only, large (every
payload's text) and finds substrings, not keys; and both stop finding a run once
retention prunes its payload. A narrow ``(value, run_id)`` B-tree is a few bytes per key,
works on both databases, and keeps pruned runs findable (see bench/search.py).
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, backref, mapped_column, relationship

from app.extensions import db
from app.models.run import Run


class RunKey(db.Model):
    __tablename__ = "run_keys"
    __table_args__ = (Index("ix_run_keys_value", "value", "run_id"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    value: Mapped[str] = mapped_column(String(255), primary_key=True)

    run: Mapped[Run] = relationship(
        backref=backref("search_keys", cascade="all, delete-orphan", passive_deletes=True)
    )


# Retention looks for runs whose payload is still there: a partial index holds only those,
# so the hourly job does not walk the already-pruned history.
Index(
    "ix_runs_unpruned_received",
    Run.received_at,
    postgresql_where=Run.pruned_at.is_(None),
    sqlite_where=Run.pruned_at.is_(None),
)

# Dashboards (app/services/dashboard.py): counts and sparkline buckets of a time window read
# only this index (no heap visit per run), and each flow's last success is one index descent.
Index("ix_runs_received_flow_status", Run.received_at, Run.flow_id, Run.status)
Index("ix_runs_flow_status_finished", Run.flow_id, Run.status, Run.finished_at)
