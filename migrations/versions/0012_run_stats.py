"""run_stats: per-flow minute and hour buckets the dashboards read, and their watermark

Empty on upgrade: the dashboard reads runs after the (missing) watermark live, and the
scheduler's first roll-up ticks fill the history in hour chunks (or ``flask rollup backfill``).

Revision ID: 0012_run_stats
Revises: 0011_reconciliation_sql
Create Date: 2026-11-27 10:00:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision = '0012_run_stats'
down_revision = "0011_reconciliation_sql"
branch_labels = None
depends_on = None


def _json():
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade():
    op.create_table(
        'run_stats',
        sa.Column('grain', sa.Integer(), nullable=False),
        sa.Column('bucket_start', sa.DateTime(), nullable=False),
        sa.Column('flow_id', sa.Integer(), nullable=False),
        sa.Column('received', sa.Integer(), nullable=False),
        sa.Column('succeeded', sa.Integer(), nullable=False),
        sa.Column('filtered', sa.Integer(), nullable=False),
        sa.Column('dead_lettered', sa.Integer(), nullable=False),
        sa.Column('rejected', sa.Integer(), nullable=False),
        sa.Column('latency', _json(), nullable=False),
        sa.Column('last_success_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ['flow_id'], ['flows.id'],
            name=op.f('fk_run_stats_flow_id_flows'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('grain', 'bucket_start', 'flow_id', name=op.f('pk_run_stats')),
    )
    with op.batch_alter_table('run_stats', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_run_stats_flow_id'), ['flow_id'], unique=False)
    op.create_table(
        'run_stats_watermarks',
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('watermark', sa.DateTime(), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_run_stats_watermarks')),
    )


def downgrade():
    op.drop_table('run_stats_watermarks')
    with op.batch_alter_table('run_stats', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_run_stats_flow_id'))
    op.drop_table('run_stats')
