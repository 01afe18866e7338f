"""Flowgate web layer: the application factory.

``create_app`` reads settings, binds extensions and registers blueprints. Nothing happens at
import time: no connections, no environment reads, no logging set-up.
"""

from __future__ import annotations

from typing import Any

from flask import Flask


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    from app import cli, models, ui  # noqa: F401  (models: registers tables for Alembic)
    from app.api import register_api
    from app.config import load_settings
    from app.errors import register_error_handlers
    from app.extensions import csrf, db, login_manager, migrate

    settings = load_settings()
    if overrides:
        settings.update(overrides)
    flask_app = Flask(__name__, instance_path=settings["INSTANCE_PATH"])
    flask_app.config.update(settings)
    flask_app.json.sort_keys = False  # mapped output keeps the order the analyst wrote

    db.init_app(flask_app)
    with flask_app.app_context():
        _tune_sqlite(db.engine)
    migrate.init_app(flask_app, db, directory=str(_migrations_dir()), render_as_batch=True)
    login_manager.init_app(flask_app)
    csrf.init_app(flask_app)
    register_api(flask_app)
    register_error_handlers(flask_app)  # after smorest, so problem+json wins
    flask_app.register_blueprint(ui.bp)
    cli.register(flask_app)
    return flask_app


def _tune_sqlite(engine: Any) -> None:
    """SQLite is shared by web, workers and scheduler: WAL lets readers and the writer work
    at once, and a busy timeout makes writers wait for the lock instead of failing."""
    if engine.dialect.name != "sqlite":
        return
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def _migrations_dir() -> Any:
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "migrations"
