"""Issue #5, round 8: ``POST /hooks/<slug>`` is answered in front of Flask's request
dispatch (app/api/hooks.py, ``WebhookIntake``). Its answers are the documented route's."""

from __future__ import annotations

import io
import json

import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app

from app.api.hooks import WebhookIntake
from app.models import Run
from tests.app.test_walking_skeleton import ORDER, live_flow

BODY = json.dumps(ORDER).encode()


@pytest.fixture
def hook(client, make_user, sink):
    ctx = live_flow(client, make_user, sink)
    return f"/hooks/{ctx['flow']['slug']}"


def _call(wsgi_app, path: str, **kwargs):
    environ = EnvironBuilder(path=path, method=kwargs.pop("method", "POST"), **kwargs).get_environ()
    body, status, headers = run_wsgi_app(wsgi_app, environ, buffered=True)
    return int(status.split()[0]), dict(headers), b"".join(body)


def _flask_only(app):
    """Flask's own dispatch, without the middleware in front of it."""
    assert isinstance(app.wsgi_app, WebhookIntake)
    return app.wsgi_app.wsgi_app


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/json", BODY, 202),
        ("application/json", b'{"a": 1, "a": 2}', 400),
        ("application/json", b"", 400),
        ("text/plain", BODY, 415),
        ("application/x-www-form-urlencoded", b"a=1", 415),
    ],
)
def test_the_fast_path_answers_as_the_documented_route_does(
    app, hook, content_type, body, status
) -> None:
    fast = _call(app.wsgi_app, hook, data=body, content_type=content_type)
    routed = _call(_flask_only(app), hook, data=body, content_type=content_type)
    assert fast[0] == routed[0] == status
    assert fast[1]["Content-Type"] == routed[1]["Content-Type"]
    if status == 202:  # two runs: ids differ by one
        assert json.loads(fast[2])["run_id"] + 1 == json.loads(routed[2])["run_id"]
    else:
        assert json.loads(fast[2]) == json.loads(routed[2])
        assert fast[1]["Content-Type"] == "application/problem+json"


def test_an_unknown_flow_is_a_404_problem_and_other_methods_go_to_flask(app, client) -> None:
    status, headers, body = _call(
        app.wsgi_app, "/hooks/no-such-flow", data=BODY, content_type="application/json"
    )
    assert status == 404 and json.loads(body)["title"] == "Not found"
    assert client.get("/hooks/no-such-flow").status_code == 405  # Flask's routing answers
    assert client.post("/hooks/a/b", data=BODY).status_code == 404  # not a hook address


def test_a_body_cut_short_is_a_400_problem_and_nothing_is_stored(app, hook) -> None:
    environ = EnvironBuilder(
        path=hook, method="POST", content_type="application/json"
    ).get_environ()
    environ["wsgi.input"] = io.BytesIO(BODY[:100])
    environ["CONTENT_LENGTH"] = str(len(BODY))  # promised more than was sent
    body, status, _headers = run_wsgi_app(app.wsgi_app, environ, buffered=True)
    assert int(status.split()[0]) == 400
    assert json.loads(b"".join(body))["status"] == 400
    with app.app_context():
        assert Run.query.count() == 0


def test_a_chunked_body_without_content_length_is_read_and_bounded(app, hook) -> None:
    app.config["FLOWGATE_MAX_BODY_BYTES"] = len(BODY) + 10
    environ = EnvironBuilder(
        path=hook, method="POST", content_type="application/json"
    ).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input_terminated"] = True  # what gunicorn says of a de-chunked body
    environ["wsgi.input"] = io.BytesIO(BODY)
    body, status, _ = run_wsgi_app(app.wsgi_app, environ, buffered=True)
    assert int(status.split()[0]) == 202, b"".join(body)
    environ["wsgi.input"] = io.BytesIO(BODY + b" " * 50)
    body, status, _ = run_wsgi_app(app.wsgi_app, environ, buffered=True)
    assert int(status.split()[0]) == 413


def test_an_unexpected_error_is_a_logged_500_problem_and_the_next_webhook_works(
    app, hook, monkeypatch, caplog
) -> None:
    from app.services import intake

    real = intake.accept_webhook
    monkeypatch.setattr(intake, "accept_webhook", lambda *a: 1 / 0)
    status, headers, body = _call(app.wsgi_app, hook, data=BODY, content_type="application/json")
    assert status == 500 and headers["Content-Type"] == "application/problem+json"
    assert "ZeroDivisionError" in caplog.text
    monkeypatch.setattr(intake, "accept_webhook", real)
    assert _call(app.wsgi_app, hook, data=BODY, content_type="application/json")[0] == 202
