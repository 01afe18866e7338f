"""Webhook intake: ``POST /hooks/<slug>``.

The route below is what the OpenAPI document shows and what Flask would dispatch to; in
practice ``WebhookIntake`` (installed in front of Flask by ``create_app``) answers these
requests first, with the same function and so the same answers. Flask's request dispatch
(request context, URL matching, smorest's decorators, response processing) was about 15 %
of a webhook's CPU, and a webhook needs none of it: no session, no user, no CSRF, no
marshmallow (bench/README.md, round 8).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any

from flask import Flask, Response, current_app, request
from flask_smorest import Blueprint
from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import get_input_stream

from app.errors import ServiceError, problem, service_problem
from app.schemas.common import ProblemSchema
from app.schemas.runs import AcceptedSchema
from app.services import intake

bp = Blueprint("hooks", __name__, url_prefix="/hooks", description="Webhook intake")
log = logging.getLogger("flowgate.web")

_HOOK_PATH = re.compile(r"/hooks/([^/]+)\Z")


def _read_body(stream: IO[bytes], content_length: int | None, limit: int) -> bytes:
    if content_length is not None and content_length > limit:
        raise intake.PayloadTooLarge(f"the body is {content_length} bytes; the limit is {limit}")
    body = stream.read(limit + 1)  # chunked bodies have no Content-Length
    if len(body) > limit:
        raise intake.PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")
    return body


def answer_webhook(
    slug: str,
    headers: Mapping[str, str],
    stream: IO[bytes],
    content_length: int | None,
    content_type: str | None,
) -> Response:
    """The whole answer to one webhook, problems included (needs an application context)."""
    try:
        body = _read_body(stream, content_length, current_app.config["FLOWGATE_MAX_BODY_BYTES"])
        accepted = intake.accept_webhook(slug, headers, body, content_type)
    except ServiceError as exc:
        intake.count_refusal(slug, exc.status)
        return service_problem(exc)
    except HTTPException as exc:  # the client went away before sending the whole body
        intake.count_refusal(slug, exc.code or 400)
        return problem(exc.code or 400, exc.name, exc.description or "")
    # AcceptedSchema's two fields, serialised here rather than by a marshmallow dump and
    # jsonify (bench/README.md, round 6). tests/app/test_intake.py reads it back.
    duplicate = "true" if accepted.duplicate else "false"
    text = f'{{"run_id":{int(accepted.run_id)},"duplicate":{duplicate}}}'
    return Response(text, status=200 if accepted.duplicate else 202, mimetype="application/json")


@bp.post("/<slug>")
@bp.response(202, AcceptedSchema)
@bp.alt_response(200, schema=AcceptedSchema, description="Duplicate event id: the original run")
@bp.alt_response(400, schema=ProblemSchema, description="Malformed or too deeply nested JSON")
@bp.alt_response(401, schema=ProblemSchema, description="Missing or bad signature")
@bp.alt_response(404, schema=ProblemSchema, description="No live flow at this address")
@bp.alt_response(413, schema=ProblemSchema)
@bp.alt_response(415, schema=ProblemSchema, description="Not JSON")
@bp.alt_response(422, schema=ProblemSchema, description="Event id reused with a different body")
@bp.alt_response(429, schema=ProblemSchema, description="Backlog over the limit: retry later")
@bp.alt_response(503, schema=ProblemSchema, description="Ledger unavailable: retry")
@bp.doc(security=[])
def receive_webhook(slug: str) -> Response:
    """Accept one JSON message for the live version of a flow.

    Answers 202 only after the run is committed to the ledger.
    """
    return answer_webhook(
        slug, request.headers, request.stream, request.content_length, request.content_type
    )


StartResponse = Callable[..., Any]


class WebhookIntake:
    """WSGI middleware: answers ``POST /hooks/<slug>`` with ``answer_webhook`` inside an
    application context (the database session is removed when it ends, as after any
    request), and hands every other request to Flask."""

    def __init__(self, flask_app: Flask, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.flask_app = flask_app
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "POST":
            match = _HOOK_PATH.match(environ.get("PATH_INFO", ""))
            if match:
                return self._receive(environ, start_response, match.group(1))
        return self.wsgi_app(environ, start_response)

    def _receive(
        self, environ: dict[str, Any], start_response: StartResponse, raw_slug: str
    ) -> Iterable[bytes]:
        # WSGI gives the path as latin-1 text; the route's converter sees it as UTF-8.
        slug = raw_slug.encode("latin-1").decode("utf-8", "replace")
        try:
            content_length = int(environ.get("CONTENT_LENGTH") or "") or None
        except ValueError:
            content_length = None
        with self.flask_app.app_context():
            try:
                response = answer_webhook(
                    slug,
                    EnvironHeaders(environ),
                    get_input_stream(environ, max_content_length=None),
                    content_length,
                    environ.get("CONTENT_TYPE"),
                )
            except Exception:
                log.exception("web.unhandled_error")
                response = problem(500, "Internal server error", "an unexpected error was logged")
            return response(environ, start_response)
