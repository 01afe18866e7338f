"""run replays: replay counter, last replay time, original version of a replayed run

Revision ID: 0002_run_replays
Revises: 0001_initial
Create Date: 2026-11-26 19:17:33.135725

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002_run_replays'
down_revision = '0001_initial'
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMNs: SQLite alters in place, so the table keeps its AUTOINCREMENT.
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('replays', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('replayed_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('original_version_id', sa.Integer(), nullable=True))


def downgrade():
    # SQLite recreates the table to drop columns: keep AUTOINCREMENT (run ids are part of
    # idempotency keys and must never be reused).
    with op.batch_alter_table(
        'runs', schema=None, table_kwargs={'sqlite_autoincrement': True}
    ) as batch_op:
        batch_op.drop_column('original_version_id')
        batch_op.drop_column('replayed_at')
        batch_op.drop_column('replays')
