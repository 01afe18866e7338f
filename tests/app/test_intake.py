"""Webhook intake: bad input gets a clear 4xx problem, never a 500; duplicates are deduped."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Run
from app.schemas.runs import AcceptedSchema
from tests.app.test_walking_skeleton import ORDER, live_flow


def run_count() -> int:
    return db.session.execute(select(func.count(Run.id))).scalar_one()


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["title"]
    return body


@pytest.fixture
def hook(client, make_user, sink):
    ctx = live_flow(client, make_user, sink)
    return f"/hooks/{ctx['flow']['slug']}"


def test_unknown_or_not_live_flow_is_404(client, make_user):
    _, headers = make_user("analyst")
    flow = client.post("/api/v1/flows", json={"name": "Not live yet"}, headers=headers).get_json()
    assert_problem(client.post(f"/hooks/{flow['slug']}", json=ORDER), 404)
    assert_problem(client.post("/hooks/no-such-flow", json=ORDER), 404)
    assert run_count() == 0


def test_malformed_json_is_400(client, hook):
    body = assert_problem(
        client.post(hook, data=b'{"order": ', content_type="application/json"), 400
    )
    assert "malformed JSON" in body["detail"]
    assert run_count() == 0


def test_text_plain_is_415(client, hook):
    assert_problem(client.post(hook, data=json.dumps(ORDER), content_type="text/plain"), 415)
    assert_problem(client.post(hook, data=json.dumps(ORDER)), 415)  # no content type at all
    assert run_count() == 0


def test_100000_deep_array_is_400_not_500(client, hook):
    deep = b"[" * 100_000 + b"]" * 100_000
    body = assert_problem(client.post(hook, data=deep, content_type="application/json"), 400)
    assert "deep" in body["detail"]
    assert run_count() == 0


@pytest.mark.parametrize(
    "raw, why",
    [
        (b'{"total": NaN}', "NaN"),
        (b'{"total": Infinity}', "Infinity"),
        (b'{"total": 1e999}', "too large"),  # valid syntax, but it would parse to infinity
        (b'{"total": -1E400}', "too large"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"   ", "empty"),
        (b'{"a": "unterminated}', "malformed"),
    ],
)
def test_invalid_json_variants_are_400(client, hook, raw, why):
    body = assert_problem(client.post(hook, data=raw, content_type="application/json"), 400)
    assert why.lower() in body["detail"].lower()
    assert run_count() == 0


@pytest.mark.parametrize(
    "raw", [b'{"note": "a\\u0000b"}', b'{"a\\u0000": 1}', b'[{"x": ["\\u0000"]}]']
)
def test_a_nul_character_is_400_on_every_database(client, hook, raw):
    """PostgreSQL's jsonb cannot hold U+0000: refused at intake, not a 500 at the INSERT."""
    body = assert_problem(client.post(hook, data=raw, content_type="application/json"), 400)
    assert "U+0000" in body["detail"]
    assert run_count() == 0


def test_an_escaped_backslash_before_u0000_is_not_a_nul(client, hook):
    payload = dict(ORDER, note="C:\\u0000dir")  # a backslash, then the text "u0000dir"
    assert client.post(hook, json=payload).status_code == 202


def test_brackets_inside_strings_do_not_count_as_depth(client, hook):
    payload = dict(ORDER, note="[" * 500 + "{" * 500)
    assert client.post(hook, json=payload).status_code == 202


def test_body_over_limit_is_413(client, hook, app):
    app.config["FLOWGATE_MAX_BODY_BYTES"] = 1000
    assert_problem(client.post(hook, json=ORDER), 413)


def test_json_with_charset_and_vendor_types_is_accepted(client, hook):
    for content_type in ("application/json; charset=utf-8", "application/vnd.shop+json"):
        response = client.post(hook, data=json.dumps(ORDER), content_type=content_type)
        assert response.status_code == 202, response.get_json()


def test_the_202_body_is_the_documented_accepted_schema(client, hook, app):
    response = client.post(hook, json=ORDER)
    assert response.status_code == 202 and response.mimetype == "application/json"
    body = response.get_json()
    assert body == AcceptedSchema().dump({"run_id": body["run_id"], "duplicate": False})
    assert isinstance(body["run_id"], int) and db.session.get(Run, body["run_id"]) is not None


def test_run_is_committed_before_202_even_without_redis(client, hook, app):
    app.config["FLOWGATE_REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there
    app.extensions.pop("flowgate.redis", None)
    response = client.post(hook, json=ORDER)
    assert response.status_code == 202
    run = db.session.get(Run, response.get_json()["run_id"])
    assert run.status == "queued"  # the sweep will enqueue it when Redis is back


def test_same_event_id_is_deduplicated_and_changed_body_is_422(client, make_user, sink):
    ctx = live_flow(client, make_user, sink, event_id_header="X-Shopify-Event-Id")
    hook = f"/hooks/{ctx['flow']['slug']}"
    headers = {"X-Shopify-Event-Id": "evt-1"}
    first = client.post(hook, json=ORDER, headers=headers)
    assert first.status_code == 202
    again = client.post(hook, json=ORDER, headers=headers)
    assert again.status_code == 200
    assert again.get_json() == {"run_id": first.get_json()["run_id"], "duplicate": True}
    changed = client.post(hook, json=dict(ORDER, order_number=2), headers=headers)
    body = assert_problem(changed, 422)
    assert body["original_run_id"] == first.get_json()["run_id"]
    assert_problem(client.post(hook, json=ORDER), 400)  # the declared header is required
    assert run_count() == 1


def test_github_delivery_id_posted_three_times_is_one_run_and_one_effect(
    client, make_user, sink, run_worker
):
    """Reliability case 26 with GitHub: a redelivery carries the same X-GitHub-Delivery GUID,
    so it is acknowledged with the original run, never run again."""
    ctx = live_flow(client, make_user, sink, event_id_header="X-GitHub-Delivery")
    hook = f"/hooks/{ctx['flow']['slug']}"
    delivery = {"X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}
    first = client.post(hook, json=ORDER, headers=delivery)
    assert first.status_code == 202, first.get_json()
    run_id = first.get_json()["run_id"]
    repeats = [client.post(hook, json=ORDER, headers=delivery) for _ in range(2)]
    for again in repeats:
        assert again.status_code == 200, again.get_json()
        assert again.get_json() == {"run_id": run_id, "duplicate": True}
    assert run_count() == 1
    run_worker()
    assert len(sink.requests) == 1 and len(sink.effects()) == 1  # one effect downstream
    # Another delivery id is another event, even with the same body.
    other = client.post(
        hook, json=ORDER, headers={"X-GitHub-Delivery": "9a1b5c7e-0f4d-11ef-8b2a-2e9a3c4d5e6f"}
    )
    assert other.status_code == 202 and other.get_json()["run_id"] != run_id
    assert run_count() == 2


@pytest.mark.parametrize(
    "raw, why",
    [
        (b'{"sku": "A", "sku": "B"}', "duplicate key 'sku'"),
        (b'{"name": "\\ud800"}', "surrogate"),
    ],
)
def test_duplicate_keys_and_lone_surrogates_are_400(client, hook, raw, why):
    body = assert_problem(client.post(hook, data=raw, content_type="application/json"), 400)
    assert why in body["detail"]
    assert run_count() == 0


def test_valid_surrogate_pair_is_accepted(client, hook):
    raw = b'{"name": "\\ud83d\\ude00", "order_number": 1}'
    assert client.post(hook, data=raw, content_type="application/json").status_code == 202


def test_form_and_multipart_bodies_are_never_treated_as_json(client, hook):
    form = client.post(hook, data={"order_number": "1"})
    assert_problem(form, 415)
    # A multipart body with a file whose content is valid JSON is still not JSON.
    upload = client.post(
        hook,
        data={"files": (io.BytesIO(json.dumps(ORDER).encode()), "order.json")},
        content_type="multipart/form-data",
    )
    body = assert_problem(upload, 415)
    assert "multipart/form-data" in body["detail"]
    assert run_count() == 0


def test_backlog_over_threshold_is_429_with_retry_after(client, hook, app):
    app.config["FLOWGATE_MAX_BACKLOG"] = 2
    assert client.post(hook, json=ORDER).status_code == 202
    app.extensions.pop("flowgate.backlog", None)
    assert client.post(hook, json=ORDER).status_code == 202
    app.extensions.pop("flowgate.backlog", None)
    refused = client.post(hook, json=ORDER)
    assert_problem(refused, 429)
    assert refused.headers["Retry-After"] == "30"
    assert run_count() == 2


def test_event_id_from_a_jsonata_expression_dedupes(client, make_user, sink):
    ctx = live_flow(client, make_user, sink, event_id_expression="$string(id)")
    hook = f"/hooks/{ctx['flow']['slug']}"
    first = client.post(hook, json=ORDER)
    assert first.status_code == 202
    again = client.post(hook, json=ORDER)
    assert again.status_code == 200 and again.get_json()["run_id"] == first.get_json()["run_id"]
    other = client.post(hook, json=dict(ORDER, id=5500000002))
    assert other.status_code == 202
    missing = client.post(hook, json={"no": "id"})
    assert_problem(missing, 400)
    assert run_count() == 2


def test_same_event_id_posted_concurrently_makes_one_run(client, make_user, sink, app):
    """20 concurrent deliveries of one Shopify event: the unique constraint keeps one run."""
    from concurrent.futures import ThreadPoolExecutor

    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("SQLite serialises writers; the race needs PostgreSQL")
    ctx = live_flow(client, make_user, sink, event_id_header="X-Shopify-Event-Id")
    hook = f"/hooks/{ctx['flow']['slug']}"
    db.session.remove()

    def post(_: int) -> tuple[int, int]:
        with app.test_client() as c:
            r = c.post(hook, json=ORDER, headers={"X-Shopify-Event-Id": "evt-race"})
            return r.status_code, r.get_json()["run_id"]

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(post, range(20)))
    statuses = sorted(code for code, _ in results)
    assert statuses.count(202) == 1 and statuses.count(200) == 19, statuses
    assert len({run_id for _, run_id in results}) == 1
    assert run_count() == 1


def test_webhook_neither_opens_nor_sets_the_session_cookie(client, hook, app, monkeypatch):
    from app.services.users import create_user

    create_user("ana@example.test", "analyst", "a-long-password")
    login = client.post(
        "/api/v1/auth/login", json={"email": "ana@example.test", "password": "a-long-password"}
    )
    assert "session=" in login.headers["Set-Cookie"]
    opened: list[str] = []
    interface = app.session_interface
    original = interface.open_session

    def counting_open_session(flask_app, request):
        opened.append(request.path)
        return original(flask_app, request)

    monkeypatch.setattr(interface, "open_session", counting_open_session)
    accepted = client.post(hook, json=ORDER)
    assert accepted.status_code == 202
    assert "Set-Cookie" not in accepted.headers
    assert opened == []  # answered in front of Flask's request dispatch: no session at all
    assert client.get("/api/v1/flows").status_code == 200  # the browser's session still works
