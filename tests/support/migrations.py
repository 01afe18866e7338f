"""An app on a database of its own, empty and unmigrated, for tests that move a schema
up and down with Flask-Migrate (the shared test database stays at the head)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MIGRATIONS = str(Path(__file__).resolve().parents[2] / "migrations")


@contextmanager
def app_on_empty_database(database_url: str, tmp_path: Path) -> Iterator[Any]:
    """A Flask app (its context pushed) on a fresh database of the same kind as
    ``database_url``: a new SQLite file, or a new PostgreSQL database dropped afterwards."""
    from app import create_app
    from app.extensions import db
    from tests.conftest import _overrides, _postgres_database

    dropper = None
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'migrations.db'}"
    else:
        dropper = _postgres_database()
        url = next(dropper)
    try:
        flask_app = create_app(_overrides(url, "redis://unused", tmp_path))
        with flask_app.app_context():
            try:
                yield flask_app
            finally:
                db.session.remove()
                db.engine.dispose()
    finally:
        if dropper is not None:
            for _ in dropper:  # runs the generator's DROP DATABASE
                pass
