"""runs: drop the three indexes that are the prefix of another one

``ix_runs_status`` (status) is the prefix of ``ix_runs_status_next_attempt``,
``ix_runs_flow_status`` (flow_id, status) of ``ix_runs_flow_status_finished`` and
``ix_runs_received_at`` (received_at) of ``ix_runs_received_flow_status``. Each run's row
is written three times (intake, claim, finish) and a status change is never a HOT update,
so every index costs PostgreSQL an insertion per write.

Revision ID: 0015_drop_prefix_run_indexes
Revises: 0014_run_step_input_ref
Create Date: 2026-11-27 06:20:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0015_drop_prefix_run_indexes'
down_revision = "0014_run_step_input_ref"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_status')
        batch_op.drop_index('ix_runs_flow_status')
        batch_op.drop_index('ix_runs_received_at')


def downgrade():
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index('ix_runs_received_at', ['received_at'], unique=False)
        batch_op.create_index('ix_runs_flow_status', ['flow_id', 'status'], unique=False)
        batch_op.create_index('ix_runs_status', ['status'], unique=False)
