"""Hostile JSONata end to end: the worker dead-letters the run with ``resource_limit`` and
goes on with the next one; the preview endpoint stops it the same way (reliability test 24)."""

from __future__ import annotations

import time

import pytest

from app import runtime
from app.extensions import db
from app.models import Run
from tests.app.test_walking_skeleton import ORDER, definition, live_flow
from tests.support.contracts import complete_contract

REGEX = '$match("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", /(a+)+$/)'  # ~minutes in Python's re


@pytest.fixture
def short_limit(app):
    """A 300 ms limit (hard kill at 550 ms) keeps these tests fast; set before first use."""
    app.config["FLOWGATE_MAPPING_TIMEOUT_MS"] = 300
    return app


def _hostile_flow(client, ctx, expression: str) -> dict:
    """A second live flow, on ctx's connection, whose map step is ``expression``."""
    headers = ctx["headers"]
    connection_id = client.get("/api/v1/connections", headers=headers).get_json()["items"][0]["id"]
    doc = definition(connection_id)
    doc["steps"][1]["expression"] = expression
    r = client.post("/api/v1/flows", json={"name": "Hostile mapping"}, headers=headers)
    assert r.status_code == 201, r.get_json()
    flow = r.get_json()
    r = client.put(f"/api/v1/flows/{flow['id']}/draft", json={"definition": doc}, headers=headers)
    assert r.status_code == 200, r.get_json()
    base = f"/api/v1/flows/{flow['id']}/versions/{r.get_json()['version']}"
    assert (
        client.post(
            f"{base}/submit", json={"contract": complete_contract()}, headers=headers
        ).status_code
        == 200
    )
    approved = client.post(f"{base}/approve", json={}, headers=ctx["owner_headers"])
    assert approved.status_code == 200, approved.get_json()
    return {"flow": flow}


def _post(client, ctx) -> int:
    r = client.post(f"/hooks/{ctx['flow']['slug']}", json=ORDER)
    assert r.status_code == 202, r.get_json()
    return r.get_json()["run_id"]


def _run(run_id: int) -> Run:
    db.session.expire_all()
    return db.session.get(Run, run_id)


def _hostile_run_then_good_run(client, make_user, sink, run_worker, hard_limit_s: float) -> None:
    good = live_flow(client, make_user, sink)
    hostile = _hostile_flow(client, good, REGEX)
    hostile_run, good_run = _post(client, hostile), _post(client, good)

    run_worker()  # one worker, both runs, in order

    run = _run(hostile_run)
    assert run.status == "dead_lettered" and "to_oms_order" in run.reason
    [failed] = [s for s in run.steps if s.status == "failed"]
    assert failed.step_id == "to_oms_order" and failed.error["code"] == "resource_limit"
    # The step's own time (the whole drain also counts RQ's overhead on a busy machine);
    # +0.5 s: a fresh child may have been started for it (~0.15 s).
    assert failed.duration_ms < (hard_limit_s + 0.5) * 1000
    assert _run(good_run).status == "succeeded"
    assert [r.json()["orderRef"] for r in sink.requests] == ["WEB-1001"]


def _preview_is_stopped(client, make_user, within_s: float) -> None:
    _, headers = make_user("analyst")
    started = time.monotonic()
    r = client.post(
        "/api/v1/mappings/preview", json={"expression": REGEX, "input": {}}, headers=headers
    )
    elapsed = time.monotonic() - started
    assert r.status_code == 422, r.get_json()
    assert r.get_json()["error"]["code"] == "resource_limit"
    assert elapsed < within_s
    ok = client.post(
        "/api/v1/mappings/preview", json={"expression": "a + 1", "input": {"a": 1}}, headers=headers
    )
    assert ok.status_code == 200 and ok.get_json()["output"] == 2


def test_hostile_map_step_dead_letters_and_the_worker_goes_on(
    short_limit, client, make_user, sink, run_worker
):
    _hostile_run_then_good_run(client, make_user, sink, run_worker, hard_limit_s=0.55)


def test_hostile_preview_returns_422_resource_limit(short_limit, client, make_user):
    _preview_is_stopped(client, make_user, within_s=1.5)
    assert runtime.mapping_evaluator().limits.timeout_ms == 300


@pytest.mark.slow
def test_hostile_mapping_under_the_default_limits(app, client, make_user, sink, run_worker):
    assert runtime.mapping_evaluator().hard_timeout_s < 2
    _preview_is_stopped(client, make_user, within_s=2.0)
    _hostile_run_then_good_run(client, make_user, sink, run_worker, hard_limit_s=1.25)
