"""runs: a partial index of the queued runs in claim order

The batch claim takes the oldest queued runs (``status = 'queued' AND crash_count = 0
ORDER BY id LIMIT n``). Through ``ix_runs_status_next_attempt`` PostgreSQL read every
queued run and sorted them to keep the first few: 2.4–5.5 ms a claim with a backlog of
2,000, growing with the backlog, so a busy queue was claimed ever more slowly. This index
holds only queued runs, ordered as the claim wants them: a claim reads its batch and stops.
A run leaves it when claimed (the new row version is not queued), so it stays the size of
the backlog and costs one insertion per run, at intake.

Revision ID: 0017_runs_queued_claim_index
Revises: 0016_lz4_payload_compression
Create Date: 2026-11-27 16:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0017_runs_queued_claim_index'
down_revision = "0016_lz4_payload_compression"
branch_labels = None
depends_on = None

QUEUED = sa.text("status = 'queued'")


def upgrade():
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index(
            'ix_runs_queued_claim',
            ['crash_count', 'id'],
            unique=False,
            postgresql_where=QUEUED,
            sqlite_where=QUEUED,
        )


def downgrade():
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_queued_claim')
