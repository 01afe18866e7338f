"""landscape: run search keys, retention marker

Revision ID: 0008_landscape
Revises: 0007_alerts
Create Date: 2026-11-26 21:50:00

- ``run_keys``: exact-match search keys per run (order number, SKU, e-mail) with a
  ``(value, run_id)`` index; why a table and not a trigram index: app/models/run_key.py.
- ``runs.pruned_at`` and a partial index on ``received_at`` of the runs not yet pruned
  (retention, app/services/retention.py).
- two indexes for the dashboards (app/services/dashboard.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_landscape"
down_revision = "0007_alerts"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "run_keys",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "value"),
    )
    op.create_index("ix_run_keys_value", "run_keys", ["value", "run_id"], unique=False)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pruned_at", sa.DateTime(), nullable=True))
    op.create_index(
        "ix_runs_unpruned_received",
        "runs",
        ["received_at"],
        unique=False,
        postgresql_where=sa.text("pruned_at IS NULL"),
        sqlite_where=sa.text("pruned_at IS NULL"),
    )
    # Dashboards: window counts and sparklines from the index alone; last success per flow.
    op.create_index(
        "ix_runs_received_flow_status", "runs", ["received_at", "flow_id", "status"], unique=False
    )
    op.create_index(
        "ix_runs_flow_status_finished", "runs", ["flow_id", "status", "finished_at"], unique=False
    )


def downgrade():
    op.drop_index("ix_runs_flow_status_finished", table_name="runs")
    op.drop_index("ix_runs_received_flow_status", table_name="runs")
    op.drop_index("ix_runs_unpruned_received", table_name="runs")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("pruned_at")
    op.drop_index("ix_run_keys_value", table_name="run_keys")
    op.drop_table("run_keys")
