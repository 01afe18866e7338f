"""notification_outbox: e-mails and webhooks queued with their cause, sent with retries

``alert_notifications.outbox_id`` links an alert's log to the outbox row that carries it.

Revision ID: 0013_notification_outbox
Revises: 0012_run_stats
Create Date: 2026-11-27 10:00:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision = '0013_notification_outbox'
down_revision = "0012_run_stats"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade():
    op.create_table(
        'notification_outbox',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('channel', sa.String(length=20), nullable=False),
        sa.Column('recipient', sa.String(length=500), nullable=False),
        sa.Column('subject', sa.String(length=300), nullable=False),
        sa.Column('payload', JSON, nullable=False),
        sa.Column('target_encrypted', sa.Text(), nullable=False),
        sa.Column('purpose', sa.String(length=64), nullable=False),
        sa.Column('alert_id', sa.Integer(), nullable=True),
        sa.Column('flow_version_id', sa.Integer(), nullable=True),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
        sa.Column('last_attempt_at', sa.DateTime(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('sent_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ['alert_id'],
            ['alerts.id'],
            name=op.f('fk_notification_outbox_alert_id_alerts'),
            ondelete='SET NULL',
        ),
        sa.ForeignKeyConstraint(
            ['flow_version_id'],
            ['flow_versions.id'],
            name=op.f('fk_notification_outbox_flow_version_id_flow_versions'),
            ondelete='SET NULL',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_outbox')),
    )
    with op.batch_alter_table('notification_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_notification_outbox_due', ['status', 'next_attempt_at'])
        batch_op.create_index(op.f('ix_notification_outbox_alert_id'), ['alert_id'])
        batch_op.create_index(
            op.f('ix_notification_outbox_flow_version_id'), ['flow_version_id']
        )
    # SQLite rebuilds alert_notifications for the foreign key (no AUTOINCREMENT to keep).
    with op.batch_alter_table('alert_notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('outbox_id', sa.Integer(), nullable=True))
        batch_op.create_index(op.f('ix_alert_notifications_outbox_id'), ['outbox_id'])
        batch_op.create_foreign_key(
            op.f('fk_alert_notifications_outbox_id_notification_outbox'),
            'notification_outbox',
            ['outbox_id'],
            ['id'],
            ondelete='SET NULL',
        )


def downgrade():
    # Queued messages are dropped with the table: deliver or accept losing them first.
    with op.batch_alter_table('alert_notifications', schema=None) as batch_op:
        batch_op.drop_constraint(
            op.f('fk_alert_notifications_outbox_id_notification_outbox'), type_='foreignkey'
        )
        batch_op.drop_index(op.f('ix_alert_notifications_outbox_id'))
        batch_op.drop_column('outbox_id')
    with op.batch_alter_table('notification_outbox', schema=None) as batch_op:
        batch_op.drop_index(op.f('ix_notification_outbox_flow_version_id'))
        batch_op.drop_index(op.f('ix_notification_outbox_alert_id'))
        batch_op.drop_index('ix_notification_outbox_due')
    op.drop_table('notification_outbox')
