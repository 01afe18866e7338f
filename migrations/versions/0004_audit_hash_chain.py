"""audit hash chain: prev_hash and hash on every audit event, existing rows chained in id order

Revision ID: 0004_audit_hash_chain
Revises: 0003_connection_limits
Create Date: 2026-11-26 19:51:40.135800

"""
import hashlib
import json

from alembic import op
import sqlalchemy as sa
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision = '0004_audit_hash_chain'
down_revision = '0003_connection_limits'
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64

# A frozen copy of the hash of app/services/audit.py at this revision (migrations must not
# change meaning when the application code does). Keep the two identical.


def _normalised(value):
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {str(k): _normalised(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalised(v) for v in value]
    raise TypeError(f"audit detail values must be JSON data, not {type(value).__name__}")


def _event_hash(prev_hash, row):
    document = {
        "prev_hash": prev_hash,
        "actor_id": row.actor_id,
        "actor_label": row.actor_label,
        "action": row.action,
        "object_type": row.object_type,
        "object_id": row.object_id,
        "detail": _normalised(row.detail or {}),
        "created_at": row.created_at.isoformat(timespec="microseconds"),
    }
    data = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")
    return hashlib.sha256(data).hexdigest()


audit_events = sa.table(
    'audit_events',
    sa.column('id', sa.Integer()),
    sa.column('actor_id', sa.Integer()),
    sa.column('actor_label', sa.String()),
    sa.column('action', sa.String()),
    sa.column('object_type', sa.String()),
    sa.column('object_id', sa.String()),
    sa.column('detail', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql')),
    sa.column('created_at', sa.DateTime()),
    sa.column('prev_hash', sa.String()),
    sa.column('hash', sa.String()),
)


def _backfill_chain():
    """Chain the existing events in id order, so `flask audit verify` passes afterwards."""
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        # Nothing may append while the chain is built (same key as app/services/audit.py).
        bind.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": 0x466C6F7741756474})
    prev, after = GENESIS_HASH, 0
    while True:
        rows = bind.execute(
            sa.select(
                audit_events.c.id,
                audit_events.c.actor_id,
                audit_events.c.actor_label,
                audit_events.c.action,
                audit_events.c.object_type,
                audit_events.c.object_id,
                audit_events.c.detail,
                audit_events.c.created_at,
            )
            .where(audit_events.c.id > after)
            .order_by(audit_events.c.id)
            .limit(1000)
        ).all()
        if not rows:
            return
        for row in rows:
            digest = _event_hash(prev, row)
            bind.execute(
                audit_events.update()
                .where(audit_events.c.id == row.id)
                .values(prev_hash=prev, hash=digest)
            )
            prev = digest
        after = rows[-1].id


def upgrade():
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('hash', sa.String(length=64), nullable=True))

    _backfill_chain()

    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.alter_column('prev_hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_audit_events_prev_hash'), ['prev_hash'])


def downgrade():
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_audit_events_prev_hash'), type_='unique')
        batch_op.drop_column('hash')
        batch_op.drop_column('prev_hash')
