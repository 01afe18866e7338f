"""Shared by the seeded benchmarks (search, dashboard): a scratch PostgreSQL database and a
Flask app bound to it. Imported after the bench script has put the repository on sys.path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text


def create_database(admin_url: str, name: str) -> str:
    """(Re)create database ``name`` next to ``admin_url``'s; returns its URL."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, name: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def make_app(url: str, instance: Path | str, secret: str) -> Any:
    from app import create_app

    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": secret,
            "SQLALCHEMY_DATABASE_URI": url,
            "INSTANCE_PATH": str(instance),
            "FLOWGATE_REDIS_URL": os.environ.get("FLOWGATE_REDIS_URL", "redis://127.0.0.1:6379/3"),
            "FLOWGATE_DEMO": False,
        }
    )
