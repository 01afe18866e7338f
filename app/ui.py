"""Serves the built single-page web UI (``frontend/dist``).

``/`` and the client-side routes (every path under one of ``CLIENT_SECTIONS``, such as
``/flows/3/edit`` or ``/runs/12``) all answer with ``index.html`` so deep links survive
a reload; the hashed bundles live under ``/assets/``.  The dist folder is
``<repo>/frontend/dist`` unless ``app.config["FLOWGATE_FRONTEND_DIST"]`` names another one.
When the UI has not been built the pages answer 503 with a hint instead of failing.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from flask import Blueprint, Response, current_app, send_from_directory

bp = Blueprint("ui", __name__)

# Vite puts a content hash in every file name under assets/, so they never change.
ASSET_MAX_AGE = 365 * 24 * 3600

BUILD_HINT = (
    "The web UI is not built: run `make run` "
    "(or `npm --prefix frontend ci && npm --prefix frontend run build`)."
)


def dist_dir() -> Path:
    configured = current_app.config.get("FLOWGATE_FRONTEND_DIST")
    if configured:
        return Path(configured)
    return Path(current_app.root_path).parent / "frontend" / "dist"


def _not_built() -> Response:
    body = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Flowgate: web UI not built</title></head>"
        '<body style="font-family: system-ui, sans-serif; max-width: 40rem;'
        ' margin: 4rem auto; padding: 0 1rem">'
        "<h1>Flowgate</h1>"
        f"<p>{escape(BUILD_HINT)}</p>"
        "</body></html>\n"
    )
    response = Response(body, status=503, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Retry-After"] = "30"
    return response


# Top-level client-side sections of the SPA; any path under one of them is a deep link.
CLIENT_SECTIONS = (
    "login",
    "flows",
    "runs",
    "dead-letters",
    "connections",
    "systems",
    "reviews",
    "map",
    "alerts",
    "audit",
    "dashboard",
    "notifications",
    "reconciliation",
    "admin",
)


@bp.get("/", endpoint="index")
@bp.get("/<any(" + ", ".join(f'"{s}"' for s in CLIENT_SECTIONS) + "):section>", endpoint="section")
@bp.get(
    "/<any(" + ", ".join(f'"{s}"' for s in CLIENT_SECTIONS) + "):section>/<path:rest>",
    endpoint="deep_link",
)
def index(section: str | None = None, rest: str | None = None) -> Response:
    dist = dist_dir()
    if not (dist / "index.html").is_file():
        return _not_built()
    response = send_from_directory(dist, "index.html", max_age=0)
    # Always revalidate, so a new build's asset names are picked up at once.
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/assets/<path:filename>", endpoint="assets")
def assets(filename: str) -> Response:
    # send_from_directory refuses names that escape the folder (404).
    response = send_from_directory(dist_dir() / "assets", filename, max_age=ASSET_MAX_AGE)
    response.headers["Cache-Control"] = f"public, max-age={ASSET_MAX_AGE}, immutable"
    return response
