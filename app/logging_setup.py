"""Process-wide logging: one JSON object per line, tagged with the run and step it concerns.

Every process calls :func:`configure_logging` once at start: the worker and the scheduler in
their ``main``, the web through gunicorn's ``--logger-class app.logging_setup.GunicornLogger``
(see the Procfile), which also formats gunicorn's own error and access lines. ``create_app``
configures nothing, so tests and the CLI keep Python's defaults.

A line looks like::

    {"ts": "2025-01-31T12:00:00.123Z", "level": "INFO", "logger": "flowgate.execution",
     "event": "run.finished", "message": "run.finished run_id=7 status=succeeded",
     "run_id": 7, "flow": "web-orders-to-oms", "step": null, "business_key": "1001"}

(on one line; ``step`` and the run fields are left out when not known). The context comes
from contextvars set by the engine, never from the log call: ``flows.execution.run_context``
(run id, flow slug, business key) around each run and ``flows.engine.step_context`` (step id)
around each step, so connector and library lines written during a run are tagged too. A
:class:`ContextFilter` on the handler copies them onto every record.

Nothing here adds payloads or secrets: a line carries its message and the identifiers above.
Call sites must keep it that way (log ids, statuses and codes; never bodies, headers, configs
or connection secrets); ``tests/app/test_logging.py`` runs a flow with a canary secret and
checks that no line contains it.

``FLOWGATE_LOG_FORMAT``: ``json`` (the default) or ``text`` (human-readable, the same fields
appended as ``key=value``; ``make run`` uses it). ``FLOWGATE_LOG_LEVEL``: default ``INFO``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import traceback
from datetime import UTC, datetime
from typing import Any, TextIO

from flows.engine import step_context
from flows.execution import run_context

CONTEXT_FIELDS = ("run_id", "flow", "step", "business_key")
_EVENT = re.compile(r"^([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+)\b")
_HANDLER_MARK = "_flowgate_handler"


class ContextFilter(logging.Filter):
    """Copies the current run and step context onto each record (never drops a record).

    A value the caller passed explicitly (``extra={"run_id": …}``) is kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        run = run_context.get()
        values = {
            "run_id": run.run_id if run else None,
            "flow": run.flow if run else None,
            "business_key": run.business_key if run else None,
            "step": step_context.get(),
        }
        for name, value in values.items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


def _event(record: logging.LogRecord) -> str | None:
    """``run.finished`` from ``"run.finished run_id=%s …"``: our messages start with one."""
    match = _EVENT.match(record.msg) if isinstance(record.msg, str) else None
    return match.group(1) if match else None


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line; non-JSON values are written with ``str``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
        }
        event = _event(record)
        if event:
            line["event"] = event
        line["message"] = record.getMessage()
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            line["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human-readable: ``time level logger message run_id=… flow=… step=…``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(
            f"{name}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) is not None and f"{name}=" not in record.getMessage()
        )
        if not context:
            return text
        head, sep, tail = text.partition("\n")  # keep a traceback below the line
        return f"{head} {context}{sep}{tail}"


def make_formatter(json_lines: bool = True) -> logging.Formatter:
    return JsonFormatter() if json_lines else TextFormatter()


def make_handler(stream: TextIO | None = None, *, json_lines: bool = True) -> logging.Handler:
    """A stream handler with the formatter and the context filter (tests use it directly)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(make_formatter(json_lines))
    handler.addFilter(ContextFilter())
    setattr(handler, _HANDLER_MARK, True)
    return handler


def json_from_env(environ: Any = None) -> bool:
    """``FLOWGATE_LOG_FORMAT``: ``text`` for human-readable lines, anything else JSON."""
    env = os.environ if environ is None else environ
    return (env.get("FLOWGATE_LOG_FORMAT") or "json").strip().lower() != "text"


def level_from_env(environ: Any = None) -> str:
    env = os.environ if environ is None else environ
    return (env.get("FLOWGATE_LOG_LEVEL") or "INFO").strip().upper()


def configure_logging(
    level: str | int | None = None, json: bool | None = None, stream: TextIO | None = None
) -> logging.Handler:
    """Install one handler on the root logger (replacing ours from an earlier call).

    ``level`` and ``json`` default to ``FLOWGATE_LOG_LEVEL`` and ``FLOWGATE_LOG_FORMAT``.
    Returns the handler, so callers can reuse its formatter (gunicorn's loggers do).
    """
    json_lines = json_from_env() if json is None else json
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, _HANDLER_MARK, False):
            root.removeHandler(existing)
    handler = make_handler(stream, json_lines=json_lines)
    root.addHandler(handler)
    root.setLevel(level if level is not None else level_from_env())
    # create_app wires Flask-Migrate, whose plugin set-up logs seven INFO lines per process.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return handler


try:  # gunicorn is a dependency of the web process only; keep this module importable anyway
    from gunicorn.glogging import Logger as _GunicornLogger
except ImportError:  # pragma: no cover
    _GunicornLogger = object  # type: ignore[assignment,misc]


class GunicornLogger(_GunicornLogger):  # type: ignore[misc,valid-type]
    """``gunicorn --logger-class app.logging_setup.GunicornLogger``: the web's logging.

    Configures the root logger (Flask's and our ``flowgate.*`` loggers propagate to it) and
    gives gunicorn's own error and access handlers the same formatter and context filter.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        handler = configure_logging()
        for log in (self.error_log, self.access_log):
            for existing in log.handlers:
                existing.setFormatter(handler.formatter)
                if not any(isinstance(f, ContextFilter) for f in existing.filters):
                    existing.addFilter(ContextFilter())
