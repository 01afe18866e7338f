"""``flask --app app secrets generate-key|rotate``: Fernet keys for secrets at rest.

Rotating a key, step by step:

1. ``flask --app app secrets generate-key`` prints a new key;
2. put it first in ``FLOWGATE_SECRET_KEYS`` (comma-separated; keep the old keys after it) and
   restart the web, worker and scheduler processes: new secrets use the new key, old ones
   still decrypt;
3. ``flask --app app secrets rotate`` re-encrypts every stored secret with the new key, in one
   transaction (all or nothing), audited as ``secrets.rotated``;
4. the old keys can now be removed from the list.
"""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

secrets_cli = AppGroup("secrets", help="Encryption keys of stored secrets.")


def rotate_stored_secrets() -> int:
    """Re-encrypt every stored secret with the primary key; the number of rows rewritten.

    Raises ValueError naming the rows no configured key opens (nothing is changed then).
    """
    from app import runtime
    from app.extensions import db
    from app.models import Connection
    from app.services import audit

    box = runtime.secret_box()
    query = select(Connection).where(Connection.secrets_encrypted != "").order_by(Connection.id)
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update()  # no connection update slips between read and write
    rows = list(db.session.execute(query).scalars())
    unreadable: list[int] = []
    for row in rows:
        try:
            row.secrets_encrypted = box.rotate(row.secrets_encrypted)
        except ValueError:
            unreadable.append(row.id)
    if unreadable:
        db.session.rollback()
        listed = ", ".join(str(i) for i in unreadable)
        raise ValueError(
            f"no configured key decrypts the secrets of connection(s) {listed}; nothing was "
            "changed (add the key they were stored with to FLOWGATE_SECRET_KEYS)"
        )
    audit.record(None, "secrets.rotated", "connection", None, connections=len(rows))
    db.session.commit()
    return len(rows)


@secrets_cli.command("generate-key")
def generate_key_command() -> None:
    """Print a new Fernet key (put it first in FLOWGATE_SECRET_KEYS)."""
    from app.crypto import generate_key

    click.echo(generate_key())


@secrets_cli.command("rotate")
def rotate_command() -> None:
    """Re-encrypt every stored secret with the first key of FLOWGATE_SECRET_KEYS."""
    try:
        count = rotate_stored_secrets()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"re-encrypted the secrets of {count} connection(s) with the primary key")
