"""run_steps.input_ref: a step's input stored as a reference to the payload or an earlier output

Revision ID: 0014_run_step_input_ref
Revises: 0013_notification_outbox
Create Date: 2026-11-27 06:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0014_run_step_input_ref'
down_revision = "0013_notification_outbox"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('run_steps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('input_ref', sa.String(length=16), nullable=True))


def downgrade():
    # Resolve the references first, so that no step loses its input.
    op.execute(
        "UPDATE run_steps SET input = (SELECT payload FROM runs WHERE runs.id = run_steps.run_id)"
        " WHERE input_ref = 'payload'"
    )
    op.execute(
        "UPDATE run_steps SET input = (SELECT earlier.output FROM run_steps AS earlier"
        " WHERE earlier.run_id = run_steps.run_id"
        " AND 'step:' || CAST(earlier.position AS VARCHAR(10)) = run_steps.input_ref)"
        " WHERE input_ref LIKE 'step:%'"
    )
    with op.batch_alter_table('run_steps', schema=None) as batch_op:
        batch_op.drop_column('input_ref')
