"""Errors as ``application/problem+json`` (RFC 9457): never an HTML page, never a bare 500."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, json
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

log = logging.getLogger("flowgate.web")


class ServiceError(Exception):
    """Raised by services; the web layer turns it into a problem response."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(ServiceError):
    status, title = 404, "Not found"


class Forbidden(ServiceError):
    status, title = 403, "Forbidden"


class Conflict(ServiceError):
    status, title = 409, "Conflict"


class Invalid(ServiceError):
    status, title = 422, "Unprocessable content"


class Unavailable(ServiceError):
    status, title = 503, "Service unavailable"


def problem(status: int, title: str, detail: str = "", **extra: Any) -> Response:
    body = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return Response(json.dumps(body), status=status, mimetype="application/problem+json")


def service_problem(exc: ServiceError) -> Response:
    response = problem(exc.status, exc.title, exc.detail, **exc.extra)
    if exc.status in (429, 503) and "retry_after" in exc.extra:
        response.headers["Retry-After"] = str(exc.extra["retry_after"])
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> Response:
        return service_problem(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        extra: dict[str, Any] = {}
        data = getattr(exc, "data", None)  # webargs/smorest validation details
        if isinstance(data, dict) and data.get("messages"):
            extra["errors"] = data["messages"]
        return problem(exc.code or 500, exc.name, exc.description or "", **extra)

    @app.errorhandler(OperationalError)
    def _database_unavailable(exc: OperationalError) -> Response:
        # The database is down or unreachable: tell the caller to come back, never a 500.
        from app.extensions import db

        db.session.rollback()
        log.error("web.database_unavailable error=%s", exc.__class__.__name__)
        response = problem(503, "Service unavailable", "the database is unavailable; retry later")
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("web.unhandled_error")
        return problem(500, "Internal server error", "an unexpected error was logged")
