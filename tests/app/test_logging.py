"""JSON log lines carry the run, flow, step and business key; no secret reaches any line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from app.logging_setup import ContextFilter, configure_logging, make_handler
from flows.engine import step_context
from flows.execution import RunContext, run_context
from tests.app.test_execution import post_order, run_row
from tests.app.test_walking_skeleton import ORDER, live_flow
from tests.conftest import SECRET
from tests.support.sink import Answer

CANARY = "s3cr3t-token"  # the connection secret live_flow stores (sent as a Bearer token)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Everything logged at DEBUG and above, through the production handler, as JSON."""
    stream = io.StringIO()
    handler = make_handler(stream, json_lines=True)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [line for line in stream.getvalue().splitlines() if line.strip()]
    assert lines, "nothing was logged"
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"ts", "level", "logger", "message"} <= record.keys()
    return records


def test_lines_logged_during_a_run_carry_its_context(
    client, make_user, sink, run_worker, log_lines
):
    ctx = live_flow(client, make_user, sink)
    run_id = post_order(client, ctx)
    run_worker()
    assert run_row(run_id).status == "succeeded"
    records = parsed(log_lines)

    finished = next(r for r in records if r.get("event") == "run.finished")
    assert finished["run_id"] == run_id
    assert finished["flow"] == ctx["flow"]["slug"]
    assert finished["business_key"] == "1001"
    assert "step" not in finished  # logged after the last step
    assert finished["level"] == "INFO" and finished["logger"] == "flowgate.execution"
    assert finished["ts"].endswith("Z")

    sent = next(r for r in records if r.get("event") == "connector.http.sent")
    assert sent["logger"] == "flowgate.connector.http"  # a connector line knows nothing of runs
    assert (sent["run_id"], sent["flow"], sent["step"], sent["business_key"]) == (
        run_id,
        ctx["flow"]["slug"],
        "send_oms",
        "1001",
    )
    # Outside a run nothing is made up.
    worker_lines = [r for r in records if r["logger"].startswith("rq.")]
    assert worker_lines and all("run_id" not in r for r in worker_lines)
    assert run_context.get() is None and step_context.get() is None


def test_no_secret_in_any_line_of_a_full_run(client, make_user, sink, run_worker, log_lines, app):
    ctx = live_flow(client, make_user, sink)
    ok = post_order(client, ctx, dict(ORDER, order_number=1))
    # A destination that echoes the credential back in its error body, then a transient error.
    sink.scripted = [
        Answer(status=201),
        Answer(status=400, body=json.dumps({"error": f"bad token {CANARY}"}).encode()),
    ]
    rejected = post_order(client, ctx, dict(ORDER, order_number=2))
    run_worker()
    assert run_row(ok).status == "succeeded"
    assert run_row(rejected).status == "dead_lettered"
    sink.default = Answer(status=503, body=f"upstream said {CANARY}".encode())
    post_order(client, ctx, dict(ORDER, order_number=3))
    run_worker()

    text = log_lines.getvalue()
    records = parsed(log_lines)
    assert any(r.get("event") == "run.delivery_failed" for r in records)
    assert CANARY not in text
    assert SECRET not in text and app.config["SECRET_KEY"] not in text
    # Payloads stay out too: the customer's e-mail address of the sample order.
    assert ORDER["email"] not in text


def test_filter_keeps_explicit_values_and_text_format_is_readable():
    stream = io.StringIO()
    text_handler = make_handler(stream, json_lines=False)
    logger = logging.getLogger("flowgate.test.logging")
    logger.addHandler(text_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    token = run_context.set(RunContext(41, "web-orders", "A-1"))
    step = step_context.set("map_it")
    try:
        logger.info("run.something happened=%s", "yes")
        logger.info("explicit", extra={"run_id": 7})
    finally:
        step_context.reset(step)
        run_context.reset(token)
        logger.removeHandler(text_handler)
    first, second = stream.getvalue().splitlines()
    assert first.endswith(
        "run.something happened=yes run_id=41 flow=web-orders step=map_it business_key=A-1"
    )
    assert "run_id=7 " in second


def test_configure_logging_installs_one_json_handler(monkeypatch):
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        monkeypatch.setenv("FLOWGATE_LOG_FORMAT", "json")
        configure_logging("INFO", stream=stream)
        handler = configure_logging("INFO", stream=stream)  # again: replaces, never stacks
        assert root.handlers.count(handler) == 1
        assert sum(isinstance(f, ContextFilter) for h in root.handlers for f in h.filters) == 1
        logging.getLogger("flowgate.test").warning("scheduler.example n=%s", 1)
        line = json.loads(stream.getvalue().splitlines()[-1])
        assert line["event"] == "scheduler.example" and line["message"] == "scheduler.example n=1"
        assert line["level"] == "WARNING"
        monkeypatch.setenv("FLOWGATE_LOG_FORMAT", "text")
        configure_logging("INFO", stream=stream)
        logging.getLogger("flowgate.test").warning("plain")
        assert stream.getvalue().splitlines()[-1].endswith("WARNING flowgate.test plain")
    finally:
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)


def test_exceptions_are_one_json_line(log_lines):
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("flowgate.test").exception("web.unhandled_error")
    (record,) = [r for r in parsed(log_lines) if r["logger"] == "flowgate.test"]
    assert record["exc_type"] == "ValueError" and "boom" in record["exc"]
    assert len(log_lines.getvalue().strip().splitlines()) >= 1
