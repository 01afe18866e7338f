"""``GET /metrics``: Prometheus text format, computed at scrape time (see ``app.metrics``).

Who may scrape: a caller with ``Authorization: Bearer <token>`` where the token is
``FLOWGATE_METRICS_TOKEN`` (recommended for Prometheus: ``authorization: {credentials: …}``
in the scrape config) or any active user's API token; a signed-in browser session works too.
There is deliberately no exemption for loopback callers: the documented deployment puts a
reverse proxy in front of the web, so every request, from anywhere, arrives from 127.0.0.1.
Without a token the answer is 401 (problem+json). The output holds counts, flow slugs and
connection names, never payloads or secrets.
"""

from __future__ import annotations

import hmac

from flask import Response, current_app, request
from flask_smorest import Blueprint
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from app.auth import authenticate
from app.metrics import FlowgateCollector
from app.schemas.common import ProblemSchema

bp = Blueprint("metrics", __name__, description="Prometheus metrics")


def _authorize() -> None:
    expected = current_app.config.get("FLOWGATE_METRICS_TOKEN")
    header = request.headers.get("Authorization", "")
    if expected and header.startswith("Bearer "):
        given = header[len("Bearer ") :].strip()
        if hmac.compare_digest(given.encode(), str(expected).encode()):
            return
    authenticate()  # a user's API token or session; raises 401 otherwise


@bp.get("/metrics")
@bp.response(
    200,
    {"type": "string"},
    content_type="text/plain",
    description="Prometheus text exposition format 0.0.4; every name starts with flowgate_",
    example='# TYPE flowgate_queue_depth gauge\nflowgate_queue_depth{queue="runs"} 0.0\n',
)
@bp.alt_response(401, schema=ProblemSchema, description="No or unknown bearer token")
@bp.doc(security=[{"bearerAuth": []}])
def metrics() -> Response:
    """Runs, deliveries, latency histograms, queue depth and circuit breakers.

    Send ``Authorization: Bearer`` with ``FLOWGATE_METRICS_TOKEN`` or a user's API token.
    """
    _authorize()
    body = generate_latest(FlowgateCollector(current_app._get_current_object()))
    return Response(body, status=200, content_type=CONTENT_TYPE_PLAIN_0_0_4)
