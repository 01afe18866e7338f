"""runs.crash_count: lost leases (worker crashes or hangs), the sweep's crash budget

``runs.attempts`` counts claims, and every re-check of an open circuit breaker is one; the
sweep's "stopped its worker FLOWGATE_MAX_RUN_ATTEMPTS times" rule now counts only leases
that were lost.

Revision ID: 0010_crash_count
Revises: 0009_poll_state
Create Date: 2026-11-26 22:50:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010_crash_count'
down_revision = "0009_poll_state"
branch_labels = None
depends_on = None


def upgrade():
    # A plain ADD COLUMN: SQLite alters in place, so the table keeps its AUTOINCREMENT.
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('crash_count', sa.Integer(), server_default='0', nullable=False)
        )


def downgrade():
    # SQLite recreates the table to drop a column: keep AUTOINCREMENT (run ids are part of
    # idempotency keys and must never be reused).
    with op.batch_alter_table(
        'runs', schema=None, table_kwargs={'sqlite_autoincrement': True}
    ) as batch_op:
        batch_op.drop_column('crash_count')
