from __future__ import annotations

from flask import Response, current_app, request
from flask_smorest import Blueprint

from app.schemas.common import ProblemSchema
from app.schemas.runs import AcceptedSchema
from app.services import intake

bp = Blueprint("hooks", __name__, url_prefix="/hooks", description="Webhook intake")


def _read_body(limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise intake.PayloadTooLarge(
            f"the body is {request.content_length} bytes; the limit is {limit}"
        )
    body = request.stream.read(limit + 1)  # chunked bodies have no Content-Length
    if len(body) > limit:
        raise intake.PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")
    return body


@bp.post("/<slug>")
@bp.response(202, AcceptedSchema)
@bp.alt_response(200, schema=AcceptedSchema, description="Duplicate event id: the original run")
@bp.alt_response(400, schema=ProblemSchema, description="Malformed or too deeply nested JSON")
@bp.alt_response(401, schema=ProblemSchema, description="Missing or bad signature")
@bp.alt_response(404, schema=ProblemSchema, description="No live flow at this address")
@bp.alt_response(413, schema=ProblemSchema)
@bp.alt_response(415, schema=ProblemSchema, description="Not JSON")
@bp.alt_response(422, schema=ProblemSchema, description="Event id reused with a different body")
@bp.alt_response(503, schema=ProblemSchema, description="Ledger unavailable: retry")
@bp.doc(security=[])
def receive_webhook(slug: str) -> Response:
    """Accept one JSON message for the live version of a flow.

    Answers 202 only after the run is committed to the ledger.
    """
    body = _read_body(current_app.config["FLOWGATE_MAX_BODY_BYTES"])
    accepted = intake.accept_webhook(slug, request.headers, body, request.content_type)
    status = 200 if accepted.duplicate else 202
    # AcceptedSchema's two fields, serialised here: smorest hands a Response back as it is,
    # which skips a marshmallow dump and jsonify on the busiest endpoint (bench/README.md,
    # round 6). The schema still documents the body; tests/app/test_intake.py reads it back.
    duplicate = "true" if accepted.duplicate else "false"
    text = f'{{"run_id":{int(accepted.run_id)},"duplicate":{duplicate}}}'
    return Response(text, status=status, mimetype="application/json")
