"""runs.payload, run_steps.input and run_steps.output: lz4 compression on PostgreSQL

A retail order's payload (5.5 KB of JSON) is over PostgreSQL's 2 KB TOAST threshold, so
every run is compressed at intake and decompressed at its claim. With the default pglz,
5,000 inserts of the 20-line order took 400 ms and reading them back 393 ms; with lz4,
103 ms and 203 ms, for 7 % more bytes (1,680 against 1,564 per payload; measured here,
bench/README.md round 7). Rows written before keep pglz and still read. SQLite has no
compression; a PostgreSQL built without lz4 keeps pglz.

Revision ID: 0016_lz4_payload_compression
Revises: 0015_drop_prefix_run_indexes
Create Date: 2026-11-27 13:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0016_lz4_payload_compression'
down_revision = "0015_drop_prefix_run_indexes"
branch_labels = None
depends_on = None

_COLUMNS = (("runs", "payload"), ("run_steps", "input"), ("run_steps", "output"))


def _lz4_available(bind) -> bool:
    return bool(
        bind.execute(
            sa.text(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings"
                " WHERE name = 'default_toast_compression'"
            )
        ).scalar()
    )


def _set_compression(method: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or (method == "lz4" and not _lz4_available(bind)):
        return
    for table, column in _COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}")


def upgrade():
    _set_compression("lz4")


def downgrade():
    _set_compression("pglz")
