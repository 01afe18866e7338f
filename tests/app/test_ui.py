"""The UI blueprint serves the built SPA from frontend/dist (or FLOWGATE_FRONTEND_DIST)."""

from __future__ import annotations

import pytest
from flask import Flask

from app import ui

INDEX = "<!doctype html><html><body><div id=root></div>FAKE-INDEX</body></html>"


@pytest.fixture
def dist(tmp_path):
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(INDEX, encoding="utf-8")
    (root / "assets" / "x.js").write_text("console.log('x');\n", encoding="utf-8")
    # A file outside dist that a traversal would try to reach.
    (tmp_path / "secret.txt").write_text("TOP-SECRET", encoding="utf-8")
    return root


def make_client(dist_path):
    flask_app = Flask(__name__)
    flask_app.config["TESTING"] = True
    flask_app.config["FLOWGATE_FRONTEND_DIST"] = str(dist_path)
    flask_app.register_blueprint(ui.bp)
    return flask_app.test_client()


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/login",
        "/flows",
        "/runs",
        "/runs/12",
        "/dead-letters",
        "/connections",
        "/flows/3/edit",
        "/systems",
        "/map",
        "/alerts/4",
        "/admin",
        "/admin/settings",
    ],
)
def test_index_and_client_routes_serve_index_without_caching(dist, path):
    response = make_client(dist).get(path)
    assert response.status_code == 200
    assert "FAKE-INDEX" in response.get_data(as_text=True)
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-cache"


def test_assets_are_served_with_long_cache(dist):
    response = make_client(dist).get("/assets/x.js")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "console.log('x');\n"
    assert "javascript" in response.mimetype
    cache = response.headers["Cache-Control"]
    assert "max-age=31536000" in cache and "immutable" in cache


def test_missing_asset_is_404(dist):
    assert make_client(dist).get("/assets/nope.js").status_code == 404


@pytest.mark.parametrize("path", ["/", "/runs/12"])
def test_missing_dist_answers_503_with_build_hint(tmp_path, path):
    response = make_client(tmp_path / "no-such-dist").get(path)
    assert response.status_code == 503
    assert response.mimetype == "text/html"
    body = response.get_data(as_text=True)
    assert "The web UI is not built" in body
    assert "make run" in body
    assert "npm --prefix frontend ci &amp;&amp; npm --prefix frontend run build" in body


def test_missing_dist_assets_are_404_not_500(tmp_path):
    assert make_client(tmp_path / "no-such-dist").get("/assets/x.js").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/assets/../../etc/passwd",
        "/assets/%2e%2e/%2e%2e/etc/passwd",
        "/assets/..%2f..%2fetc%2fpasswd",
        "/assets/../secret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/assets/..%2f..%2fsecret.txt",
        "/assets//etc/passwd",
    ],
)
def test_path_traversal_does_not_leak(dist, path):
    # Werkzeug may first redirect (e.g. merging "//"); what finally comes back must be a 404.
    response = make_client(dist).get(path, follow_redirects=True)
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert "root:" not in body
    assert "TOP-SECRET" not in body


def test_default_dist_is_next_to_the_app_package(tmp_path):
    flask_app = Flask(__name__, root_path=str(tmp_path / "app"))
    with flask_app.app_context():
        assert ui.dist_dir() == tmp_path / "frontend" / "dist"
