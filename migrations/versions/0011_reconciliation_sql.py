"""reconciliation_checks: SQL checks (kind, sql), count mode, and the checked deliver step

An external check can now run a read-only SELECT on a SQL connection (``kind`` = ``sql``,
``sql`` holds the statement) and yield a count instead of ids (``mode`` = ``count``);
``step_id`` names the deliver step a destination check covers. Existing checks stay HTTP
checks of ids (server defaults).

Revision ID: 0011_reconciliation_sql
Revises: 0010_crash_count
Create Date: 2026-11-27 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011_reconciliation_sql'
down_revision = "0010_crash_count"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('reconciliation_checks', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('kind', sa.String(length=10), server_default='http', nullable=False)
        )
        batch_op.add_column(
            sa.Column('mode', sa.String(length=10), server_default='ids', nullable=False)
        )
        batch_op.add_column(sa.Column('sql', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('step_id', sa.String(length=64), nullable=True))


def downgrade():
    # SQL checks cannot be expressed without these columns: drop them rather than turn them
    # into HTTP checks that would GET a database connection.
    op.execute("DELETE FROM reconciliation_checks WHERE kind <> 'http'")
    with op.batch_alter_table('reconciliation_checks', schema=None) as batch_op:
        batch_op.drop_column('step_id')
        batch_op.drop_column('sql')
        batch_op.drop_column('mode')
        batch_op.drop_column('kind')
