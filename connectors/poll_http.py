"""HTTP poll trigger: GET an API page by page with a cursor, one run per new item.

The scheduler calls ``poll(ctx, cursor)`` at the trigger's interval. A poll GETs
``base_url + path`` with the constant ``query`` parameters, plus ``cursor_param=<cursor>``
once a cursor is known and ``page_size_param=<page_size>`` when both are set. Two JSONata
expressions, evaluated on the JSON answer through ``ctx.evaluate`` (the flows layer's
sandboxed evaluator), pick out the page:

- ``items`` (default ``items``): the array of items; each becomes one run's message;
- ``next_cursor`` (default ``next_cursor``): the cursor of the following page; empty, null
  or missing means "no further page yet".

Each item's ``id`` expression (default ``id``) gives its dedupe id: the run's event id is
``poll:<flow id>:<id>``, unique per flow in the run ledger, so an item is never fired twice,
even when a crash between the runs' commit and the cursor save makes a page be read again.
For records that change, make the id name the change (``sku & '@' & updated_at``).

Resuming: after a page whose next cursor is empty, the cursor stays on that page, so the
next poll reads it again and fires only the items added to it since (the others dedupe).
The connection is a ``poll_http`` connection with the ``http`` destination's settings (base
URL, headers, auth including OAuth2 client credentials, timeout); requests go through the
egress-guarded ``ctx.http`` and redirects are not followed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import requests

from connectors import http as http_destination
from connectors import json_codec
from connectors.base import (
    CheckResult,
    ConnectorContext,
    ConnectorError,
    ConnectorSpec,
    PolledItem,
    Poller,
    PollPage,
    RetryableConnectorError,
)
from connectors.httputil import (
    attempt_deadline,
    bounded_request,
    error_for_status,
    read_excerpt,
)
from connectors.redaction import Redactor

MAX_PAGE_BYTES = 10 * 1024 * 1024
# A page may be large: on top of the usual deadline (httputil.attempt_deadline), time to
# transfer MAX_PAGE_BYTES at about 350 KB/s. A source dripping slower is cut off.
PAGE_TRANSFER_SECONDS = 30.0
_PARAM_NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": 64,
    "pattern": r"^[A-Za-z0-9_.\[\]-]+$",
}
_EXPRESSION = {"type": "string", "minLength": 1, "maxLength": 2000}

STEP_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "Poll an HTTP API",
    "properties": {
        "path": {
            "type": "string",
            "title": "Path",
            "description": "Appended to the connection's base URL, e.g. /stock.",
            "default": "/",
            "pattern": http_destination.PATH_PATTERN,
            "maxLength": 2048,
        },
        "query": {
            "type": "object",
            "title": "Query parameters",
            "description": "Constant query parameters sent with every page request.",
            "additionalProperties": {"type": ["string", "number", "boolean"]},
            "default": {},
        },
        "interval_seconds": {
            "type": "number",
            "title": "Interval (seconds)",
            "description": "How often to poll, e.g. 60 for every minute. Polls start at the "
            "scheduler's beat (FLOWGATE_SWEEP_INTERVAL_SECONDS), so this is the shortest gap.",
            "default": 60,
            "minimum": 1,
            "maximum": 86400,
        },
        "cursor_param": {
            **_PARAM_NAME,
            "title": "Cursor parameter",
            "description": "Query parameter that carries the cursor of the page to read.",
            "default": "cursor",
        },
        "page_size_param": {
            **_PARAM_NAME,
            "title": "Page size parameter",
            "description": "Query parameter that carries the page size (optional).",
        },
        "page_size": {
            "type": "integer",
            "title": "Page size",
            "description": "Items per page requested (with the page size parameter).",
            "minimum": 1,
            "maximum": 10000,
            "default": 100,
        },
        "items": {
            **_EXPRESSION,
            "title": "Items (JSONata)",
            "description": "Evaluated on the answer: the array of items, e.g. data.items.",
            "default": "items",
        },
        "next_cursor": {
            **_EXPRESSION,
            "title": "Next cursor (JSONata)",
            "description": "Evaluated on the answer: the next page's cursor; empty when none.",
            "default": "next_cursor",
        },
        "id": {
            **_EXPRESSION,
            "title": "Item id (JSONata)",
            "description": "Evaluated on each item: the id that dedupes it. Include a version "
            "or timestamp if the same record may change, e.g. sku & '@' & updated_at.",
            "default": "id",
        },
        "seed_on_first_poll": {
            "type": "boolean",
            "title": "Seed on first poll",
            "description": "The first poll reads every page without starting runs: only "
            "items that appear later start the flow.",
            "default": False,
        },
        "max_pages_per_poll": {
            "type": "integer",
            "title": "Pages per poll",
            "description": "Most pages read in one poll; the rest wait for the next one.",
            "minimum": 1,
            "maximum": 1000,
            "default": 10,
        },
    },
    "additionalProperties": False,
}

SPEC = ConnectorSpec(
    key="poll_http",
    name="Poll an HTTP API",
    kind="trigger",
    version=1,
    description="GET an HTTP API every interval, page by page with a cursor; each new item "
    "(deduplicated by its id) starts one run.",
    connection_schema=http_destination.CONNECTION_SCHEMA,
    secret_fields=http_destination.SPEC.secret_fields,
    step_schema=STEP_SCHEMA,
    requires_connection=True,
)


def _evaluate(ctx: ConnectorContext, expression: str, data: Any, what: str) -> Any:
    if ctx.evaluate is None:
        raise ConnectorError("no expression evaluator in the context")
    try:
        return ctx.evaluate(expression, data)
    except ConnectorError as exc:
        raise ConnectorError(f"the {what} expression failed: {exc.message}") from None


def _item_id(ctx: ConnectorContext, expression: str, item: Any, index: int) -> str:
    value = _evaluate(ctx, expression, item, "id")
    if value is None or value == "" or isinstance(value, (dict, list, bool)):
        raise ConnectorError(
            f"item {index}: the id expression {expression!r} gave no usable id "
            f"(got {json.dumps(value)[:80]})"
        )
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)[:200]


class HttpPollTrigger(Poller):
    """Reads one page per ``poll`` call; see the module docstring for the rules."""

    spec = SPEC

    def poll(self, ctx: ConnectorContext, state: Any) -> PollPage:
        """GET the page at cursor ``state`` (None: the first page)."""
        step = {**_defaults(), **dict(ctx.step_config)}
        cursor = None if state in (None, "") else str(state)
        body = self._get(ctx, step, cursor)
        items = _evaluate(ctx, str(step["items"]), body, "items")
        if items is None:
            items = []
        if not isinstance(items, list):
            items = [items]  # JSONata gives a single match unwrapped
        next_cursor = _evaluate(ctx, str(step["next_cursor"]), body, "next_cursor")
        if isinstance(next_cursor, (dict, list, bool)):
            raise ConnectorError("the next_cursor expression must give a string or a number")
        if isinstance(next_cursor, float) and next_cursor.is_integer():
            next_cursor = int(next_cursor)
        polled = [
            PolledItem(_item_id(ctx, str(step["id"]), item, index), item)
            for index, item in enumerate(items)
        ]
        nxt = None if next_cursor in (None, "") else str(next_cursor)
        if nxt is None or nxt == cursor:
            # No further page yet: stay on this one, read it again next time.
            return PollPage(polled, state=cursor, more=False)
        return PollPage(polled, state=nxt, more=bool(polled))

    def check(self, ctx: ConnectorContext) -> CheckResult:
        """GET the first page and report how many items it holds."""
        step = {**_defaults(), **dict(ctx.step_config)}
        started = time.monotonic()
        try:
            body = self._get(ctx, step, None)
            found = "a JSON answer"
            if ctx.evaluate is not None:
                items = _evaluate(ctx, str(step["items"]), body, "items")
                count = len(items) if isinstance(items, list) else int(items is not None)
                found = f"{count} item(s)"
        except ConnectorError as exc:
            return CheckResult(ok=False, message=exc.message)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        return CheckResult(ok=True, message=f"first page: {found} in {elapsed_ms} ms")

    def _get(self, ctx: ConnectorContext, step: Mapping[str, Any], cursor: str | None) -> Any:
        config = ctx.connection_config
        base_url, path = http_destination._base_url(config), str(step.get("path", "/"))
        # Path "/" (the default) is the base URL itself, as the http connector's check reads it.
        url = base_url if path == "/" else http_destination._join_url(base_url, path)
        timeout = http_destination._timeout(ctx)
        oauth = http_destination._oauth_client(config, ctx.secrets)
        if oauth is None:
            redact, auth_headers = http_destination._auth(config, ctx.secrets)
        else:
            redact, auth_headers = oauth.auth(ctx, timeout)
        headers = http_destination._request_headers(config, {}, auth_headers)
        headers.pop("Content-Type", None)
        headers["Accept"] = "application/json"
        params: dict[str, Any] = dict(step.get("query") or {})
        if cursor is not None:
            params[str(step["cursor_param"])] = cursor
        if step.get("page_size_param"):
            params[str(step["page_size_param"])] = int(step["page_size"])
        started = time.monotonic()
        with bounded_request(
            ctx.http,
            "GET",
            url,
            timeout=timeout,
            redact=redact,
            deadline=attempt_deadline(timeout) + PAGE_TRANSFER_SECONDS,
            params=params,
            headers=headers,
        ) as response:
            if not 200 <= response.status_code < 300:
                excerpt = read_excerpt(response, redact)
                error = error_for_status(response.status_code, response.headers, excerpt, redact)
                assert error is not None
                raise type(error)(
                    f"the polled API answered HTTP {response.status_code}"
                    + (f": {excerpt[:200]}" if excerpt else ""),
                    status_code=error.status_code,
                    response_excerpt=error.response_excerpt,
                )
            raw = _read_body(response)
        ctx.logger.info(
            "connector.poll_http.page status=%s bytes=%d elapsed_ms=%d",
            response.status_code,
            len(raw),
            round((time.monotonic() - started) * 1000),
        )
        return _parse(raw, redact)


def _read_body(response: requests.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > MAX_PAGE_BYTES:
                raise ConnectorError(f"the page is larger than {MAX_PAGE_BYTES} bytes")
            chunks.append(chunk)
    except (requests.RequestException, OSError) as exc:
        raise RetryableConnectorError(f"the page broke off while reading: {exc}") from None
    return b"".join(chunks)


def _parse(raw: bytes, redact: Redactor) -> Any:
    try:
        return json_codec.loads_strict(raw)
    except ValueError as exc:
        excerpt = redact(raw[:200].decode("utf-8", "replace"))
        raise ConnectorError(f"the polled API did not answer JSON ({exc}): {excerpt!r}") from None


def _defaults() -> dict[str, Any]:
    return {
        name: prop["default"]
        for name, prop in STEP_SCHEMA["properties"].items()
        if "default" in prop
    }


CONNECTOR = HttpPollTrigger
