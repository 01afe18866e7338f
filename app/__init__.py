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
    from app.api.hooks import WebhookIntake
    from app.config import load_settings
    from app.errors import register_error_handlers
    from app.extensions import csrf, db, login_manager, migrate

    settings = load_settings()
    if overrides:
        settings.update(overrides)
    flask_app = Flask(__name__, instance_path=settings["INSTANCE_PATH"])
    flask_app.config.update(settings)
    flask_app.json.sort_keys = False  # mapped output keeps the order the analyst wrote

    _bound_lock_waits(flask_app.config)
    db.init_app(flask_app)
    with flask_app.app_context():
        _tune_sqlite(db.engine, flask_app.config["FLOWGATE_DB_LOCK_TIMEOUT_MS"])
        _ping_idle_connections(db.engine)
    migrate.init_app(flask_app, db, directory=str(_migrations_dir()), render_as_batch=True)
    login_manager.init_app(flask_app)
    csrf.init_app(flask_app)
    register_api(flask_app)
    register_error_handlers(flask_app)  # after smorest, so problem+json wins
    flask_app.register_blueprint(ui.bp)
    cli.register(flask_app)
    # Webhooks are answered in front of Flask's request dispatch (app/api/hooks.py): no
    # request context, URL matching or session for them.
    flask_app.wsgi_app = WebhookIntake(flask_app, flask_app.wsgi_app)  # type: ignore[method-assign]
    return flask_app


def _tune_sqlite(engine: Any, lock_timeout_ms: int) -> None:
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
        cursor.execute(f"PRAGMA busy_timeout={int(lock_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def _bound_lock_waits(config: dict[str, Any]) -> None:
    """PostgreSQL's counterpart of SQLite's busy timeout: a statement waits at most
    ``FLOWGATE_DB_LOCK_TIMEOUT_MS`` for a lock (a migration's, an operator's LOCK TABLE),
    then fails. Without it a locked ``runs`` table would hold every intake thread until
    the lock went; with it the webhook gets 503 with Retry-After and the sender retries.
    Given to the driver at connect, by the pool here and by ``app.stores`` for its own
    connections (``app.config.postgres_options``)."""
    from app.config import postgres_options

    options = postgres_options(config)
    if not options or not str(config["SQLALCHEMY_DATABASE_URI"]).startswith("postgresql"):
        return
    engine_options = dict(config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    engine_options["connect_args"] = {**engine_options.get("connect_args", {}), **options}
    config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options


PING_AFTER_IDLE_SECONDS = 1.0


def _ping_idle_connections(engine: Any) -> None:
    """Ping a pooled connection on checkout only if it sat idle for a second or more.

    ``pool_pre_ping`` pings on every checkout: one extra round trip per transaction, about
    0.17 ms of CPU and a statement for PostgreSQL, twice per message (intake, then the
    worker) when connections are busy. A connection checked in a moment ago was fine a
    moment ago; one that idled (where a server restart or an idle timeout strikes) is
    pinged as before, and a dead one is replaced before anyone uses it."""
    if engine.dialect.name == "sqlite":
        return  # in-process: nothing to ping
    import time

    from sqlalchemy import event, exc

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["flowgate_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("flowgate_idle_since", None)
        if idle_since is not None and time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # the driver's own error type: the connection is gone
            raise exc.DisconnectionError(f"ping failed: {error.__class__.__name__}") from error
        if alive is False:
            raise exc.DisconnectionError("ping failed")


def _migrations_dir() -> Any:
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "migrations"
