"""poll and schedule trigger state (cursor, claim, pause reason)

Revision ID: 0009_poll_state
Revises: 0008_landscape
Create Date: 2026-11-26 22:00:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision = '0009_poll_state'
down_revision = "0008_landscape"
branch_labels = None
depends_on = None


def _json():
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade():
    op.create_table(
        'poll_states',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('flow_id', sa.Integer(), nullable=False),
        sa.Column('trigger_type', sa.String(length=64), nullable=False),
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('cursor', _json(), nullable=True),
        sa.Column('seen_ids', _json(), nullable=True),
        sa.Column('polls', sa.Integer(), server_default='0', nullable=False),
        sa.Column('fired', sa.Integer(), server_default='0', nullable=False),
        sa.Column('next_poll_at', sa.DateTime(), nullable=True),
        sa.Column('claimed_until', sa.DateTime(), nullable=True),
        sa.Column('last_polled_at', sa.DateTime(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('paused_reason', sa.Text(), nullable=True),
        sa.Column('paused_at', sa.DateTime(), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['flow_id'], ['flows.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('poll_states', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_poll_states_flow_id'), ['flow_id'], unique=True)


def downgrade():
    with op.batch_alter_table('poll_states', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_poll_states_flow_id'))
    op.drop_table('poll_states')
