"""Unbound extension objects; ``create_app`` binds them with ``init_app``."""

import threading
from typing import Any

from flask_login import LoginManager
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Named constraints so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()


class LazilyDocumentedApi(Api):
    """flask-smorest's Api, but the OpenAPI document is built on first read, not at start-up.

    Documenting ~25 blueprints (apispec resolving every marshmallow schema, deep copies)
    took ~0.25 s of the ~0.37 s of ``create_app``: paid by every gunicorn worker, every
    ``flask`` command and every test, for a document few of them ever read. Routes are
    registered at once as before; only ``register_views_in_doc`` waits until ``spec`` is
    first read (the openapi.json view, or any code touching ``api.spec``), so the document
    served is exactly what eager registration built.
    """

    def init_app(self, app: Any, **kwargs: Any) -> None:
        self._undocumented: list[tuple[Any, str, Any]] = []
        # Re-entrant: documenting may read ``spec`` itself. ``_building`` makes a second
        # thread wait for the document rather than see it half built.
        self._documenting = threading.RLock()
        self._building = False
        super().init_app(app, **kwargs)

    @property
    def spec(self) -> Any:
        if getattr(self, "_undocumented", None) or getattr(self, "_building", False):
            with self._documenting:
                pending, self._undocumented = self._undocumented, []
                self._building = True
                try:
                    for blp, name, parameters in pending:
                        blp.register_views_in_doc(
                            self, self._app, self._spec, name=name, parameters=parameters
                        )
                        self._spec.tag({"name": name, "description": blp.description})
                finally:
                    self._building = False
        return self._spec

    @spec.setter
    def spec(self, value: Any) -> None:
        self._spec = value

    def register_blueprint(self, blp: Any, *, parameters: Any = None, **options: Any) -> None:
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)
        self._undocumented.append((blp, name, parameters))


api = LazilyDocumentedApi()
