"""Webhook intake: validate, record the Run in SQL, commit, then enqueue its id.

The 2xx answer is only given after the commit (invariant I1); if Redis is down the run is
still safe in SQL and the sweep enqueues it later.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, exists, func, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError

from app import runtime
from app.errors import Invalid, NotFound, ServiceError, Unavailable
from app.extensions import db
from app.models import Connection, Flow, FlowVersion, Run, RunKey, VersionStatus
from app.models._types import utcnow
from app.queues import enqueue_runs
from app.redis_conn import get_redis
from app.services import search_keys
from app.stores import autocommitted
from connectors import json_codec
from connectors.base import ConnectorContext, ConnectorError, InboundRequest
from connectors.webhook import SignatureError, WebhookTrigger
from flows import mapping
from flows.results import RunStatus

log = logging.getLogger("flowgate.intake")

# An escape sequence (only strings hold backslashes): dropped first, so that every quote
# left delimits a string.
_ESCAPES = re.compile(rb"\\.", re.DOTALL)
# Every byte but quotes, brackets and colons, for bytes.translate(None, <these>) (a C loop).
# Outside strings a colon is only ever a member's separator: their count is the number of
# object members in the document, which tells a repeated key after a parse that keeps
# only the last one (orjson's).
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'"[]{}:')))
_INNERMOST = re.compile(rb"\[\]|\{\}")
_OPENERS = frozenset(b"[{")
_PASSES_UP_TO = 4096  # brackets; beyond, the depth is walked once instead


class BadRequest(ServiceError):
    status, title = 400, "Bad request"


class UnsupportedMediaType(ServiceError):
    status, title = 415, "Unsupported media type"


class PayloadTooLarge(ServiceError):
    status, title = 413, "Payload too large"


class BadSignature(ServiceError):
    """The sender's signature is missing, wrong or stale (or no secret is set: fail closed)."""

    status, title = 401, "Unauthorized"


@dataclass(frozen=True)
class Accepted:
    run_id: int
    duplicate: bool = False


def check_content_type(content_type: str | None) -> None:
    mimetype, _, params = (content_type or "").partition(";")
    mimetype = mimetype.strip().lower()
    if mimetype != "application/json" and not (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    ):
        raise UnsupportedMediaType(
            f"send JSON with 'Content-Type: application/json' (got '{mimetype or 'none'}')"
        )
    charset = re.search(r"charset=([\w-]+)", params.lower())
    if charset and charset.group(1) not in ("utf-8", "utf8"):
        raise UnsupportedMediaType("JSON must be UTF-8 encoded")


def _structure(body: bytes) -> bytes:
    """The brackets and colons of ``body`` outside its strings, in order. Escapes are
    dropped, then every byte but quotes, brackets and colons, then the strings (every other
    piece between quotes), all at C speed (20 µs for the 8 KB retail order, against 75 µs
    when a regex blanked the strings)."""
    kept = _ESCAPES.sub(b"", body).translate(None, _NOT_STRUCTURE)
    return b"".join(kept.split(b'"')[::2])


def json_depth(body: bytes, limit: int | None = None) -> int:
    """Nesting depth, without recursion."""
    return _bracket_depth(_structure(body).replace(b":", b""), limit)


def _bracket_depth(brackets: bytes, limit: int | None) -> int:
    """For the usual few hundred brackets, each pass removes the innermost ``[]``/``{}``
    pairs (a body n deep takes n passes, stopped past ``limit``); for many brackets one
    linear walk keeps a hostile body's cost linear. Brackets left unpaired (malformed JSON,
    refused by the parser) count one level each."""
    if len(brackets) > _PASSES_UP_TO:
        return _walked_depth(brackets)
    depth = 0
    while brackets and (limit is None or depth <= limit):
        brackets, removed = _INNERMOST.subn(b"", brackets)
        if not removed:
            return depth + len(brackets)
        depth += 1
    return depth


def _walked_depth(brackets: bytes) -> int:
    depth = deepest = 0
    for byte in brackets:
        if byte in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999: valid JSON syntax, but no JSON value can carry it on
        raise ValueError(f"the number {text[:40]} is too large to store")
    return value


def parse_json_body(body: bytes, max_depth: int) -> Any:
    """Parse strictly: UTF-8, no NaN/Infinity, bounded depth; errors are 400 problems."""
    if not body.strip():
        raise BadRequest("the request body is empty; send a JSON document")
    structure = _structure(body)
    depth = _bracket_depth(structure.replace(b":", b""), max_depth)
    if depth > max_depth:
        raise BadRequest(f"JSON nested more than {max_depth} levels deep (the limit)")
    # The fast parse, unless the strict one could give another value or error: a body
    # ``json_codec`` leaves to ``json`` (which words the error), a repeated key (``json``
    # and orjson keep the last value; fewer members parsed than written), or U+0000.
    # 69 µs for the 20-line order with the depth check, against 140 µs (round 8).
    payload = json_codec.loads_if_exact(body)
    if (
        payload is not json_codec.NOT_EXACT
        and _member_count(payload) == structure.count(b":")
        and not (b"\\u0000" in body and _has_nul(payload))
    ):
        return payload
    return _parse_strictly(body)


def _member_count(payload: Any) -> int:
    """Object members in ``payload``, all levels (iterative walk; 19 µs for the retail
    order)."""
    if type(payload) is not dict and type(payload) is not list:
        return 0
    count = 0
    stack = [payload]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        if type(item) is dict:
            count += len(item)
            item = item.values()
        for value in item:
            kind = type(value)
            if kind is dict or kind is list:
                push(value)
    return count


def _parse_strictly(body: bytes) -> Any:
    """``json`` with hooks that refuse what JSON cannot carry on; names the first problem."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not valid UTF-8 (byte {exc.start})") from exc
    try:
        payload = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            object_pairs_hook=_refuse_duplicate_keys,
        )
    except _DuplicateKey as exc:
        raise BadRequest(f"duplicate key '{exc.key}' in a JSON object") from exc
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"malformed JSON: {exc}") from exc
    if "\\u" in text and _has_lone_surrogate(payload):
        # "\ud800" parses in Python but cannot be stored or sent as UTF-8 later.
        raise BadRequest("the JSON contains a lone UTF-16 surrogate (\\uD800-\\uDFFF)")
    if "\\u0000" in text and _has_nul(payload):
        # PostgreSQL's jsonb cannot hold it (refused on SQLite too: one behaviour everywhere).
        raise BadRequest("the JSON contains the character U+0000 (\\u0000), which cannot be stored")
    return payload


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers would disagree on which value wins; refusing is the only safe answer.
    result = dict(pairs)  # at C speed; only a short dict means a repeated key
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


def _has_nul(payload: Any) -> bool:
    """Whether a string or key anywhere in ``payload`` holds U+0000 (iterative walk)."""
    stack = [payload]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _has_lone_surrogate(payload: Any) -> bool:
    try:
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@dataclass(frozen=True)
class _LiveFlow:
    id: int
    slug: str


@dataclass(frozen=True)
class _LiveVersion:
    id: int
    definition: dict[str, Any]


_LIVE_CACHE_SECONDS = 5.0
_STALE_RETRIES = 8


_RUN_COLUMNS = (
    "flow_id",
    "flow_version_id",
    "trigger_kind",
    "payload",
    "payload_hash",
    "idempotency_key",
    "business_key",
    "status",
    "enqueued_at",
)
# Built once and executed with parameters: a statement object keeps its compiled form's
# cache key, so intake skips building, coercing and walking a new statement per message.
# ``INSERT … SELECT <the values> RETURNING id`` rather than ``INSERT … VALUES``, so that the
# liveness check fits in (``… WHERE EXISTS``). SQLite's path; PostgreSQL's is
# ``_RECORD_RUN_PG``.
_RUN_PARAMS = {name: bindparam(name, type_=Run.__table__.c[name].type) for name in _RUN_COLUMNS}
_RUN_VALUES = select(*_RUN_PARAMS.values())


def _insert_run(values: Any) -> Any:
    return (
        insert(Run.__table__).from_select(list(_RUN_COLUMNS), values).returning(Run.__table__.c.id)
    )


_INSERT_RUN = _insert_run(_RUN_VALUES)
# The run, only if its version is still live, in one statement (``… WHERE EXISTS (<the
# version is live>)``); no row back means stale. The same snapshot rule as a SELECT before
# the INSERT in this transaction, one round trip less.
_INSERT_RUN_IF_LIVE = _insert_run(
    _RUN_VALUES.where(
        exists().where(
            FlowVersion.id == _RUN_PARAMS["flow_version_id"],
            FlowVersion.status == VersionStatus.LIVE.value,
        )
    )
)
_INSERT_KEYS = insert(RunKey.__table__)


# PostgreSQL's hot path at the driver (``app.stores.autocommitted``): the run (only if its
# version is still live, with ``check_live``) and its search keys in one statement and one
# round trip, the column defaults the ORM would add written out. An executemany of the
# keys, even in pipeline mode, would send, bind and plan one INSERT per key (about a sixth
# of intake's CPU on a 20-line order). The payload travels as JSON text: a webhook's own
# body when it is the message (already strictly parsed: no re-encoding), else ``json.dumps``
# of the message. tests/app/test_perf_paths.py checks that every column with a default or
# without NULL is written here.
_RECORD_RUN_PG = """
    WITH new_run AS (
        INSERT INTO runs (flow_id, flow_version_id, trigger_kind, payload, payload_hash,
                          idempotency_key, business_key, status, enqueued_at, received_at,
                          attempts, crash_count, replays)
        SELECT %(flow_id)s, %(flow_version_id)s, %(trigger_kind)s, %(payload)s::jsonb,
               %(payload_hash)s, %(idempotency_key)s, %(business_key)s, %(status)s,
               %(enqueued_at)s, %(enqueued_at)s, 0, 0, 0
        WHERE NOT %(check_live)s OR EXISTS (
            SELECT 1 FROM flow_versions WHERE id = %(flow_version_id)s AND status = 'live')
        RETURNING id
    ), new_keys AS (
        INSERT INTO run_keys (run_id, value)
        SELECT new_run.id, jsonb_array_elements_text(%(values)s::jsonb) FROM new_run
    )
    SELECT id FROM new_run
"""


class _StaleVersion(Exception):
    """The cached live version is no longer live (a successor was approved, or it is gone)."""


def _live_version(slug: str, *, fresh: bool = False) -> tuple[_LiveFlow, _LiveVersion]:
    """The flow and its live version, cached per process for a few seconds.

    The cache only saves the lookup: ``record_run`` re-checks in its own transaction that
    the version is still live (one primary-key read), so a retired version never gets a
    new run after its successor's approval committed; a stale entry is dropped and looked
    up again. The short expiry only bounds how long a renamed slug keeps answering.
    """
    cache = current_app.extensions.setdefault("flowgate.live_versions", {})
    now = time.monotonic()
    entry = None if fresh else cache.get(slug)
    if entry is not None and entry[0] > now:
        return entry[1], entry[2]
    row = db.session.execute(
        select(Flow.id, FlowVersion.id.label("version_id"), FlowVersion.definition)
        .join(FlowVersion, FlowVersion.flow_id == Flow.id)
        .where(Flow.slug == slug, FlowVersion.status == VersionStatus.LIVE.value)
    ).first()
    if row is None:
        cache.pop(slug, None)
        raise NotFound(f"no live flow at /hooks/{slug}")
    flow, version = _LiveFlow(row.id, slug), _LiveVersion(row.version_id, row.definition)
    cache[slug] = (now + _LIVE_CACHE_SECONDS, flow, version)
    return flow, version


class TooManyRequests(ServiceError):
    status, title = 429, "Too many requests"


_BACKLOG_STATUSES = (RunStatus.QUEUED.value, RunStatus.RETRYING.value)


def check_backlog(flow_id: int, *, fresh: bool = False) -> None:
    """Back-pressure: past the threshold the sender is told to come back (429 + Retry-After)
    instead of the queue growing without bound. Counted at most once a second per flow,
    unless ``fresh`` (a poller that has just recorded a page needs the new count)."""
    limit = current_app.config["FLOWGATE_MAX_BACKLOG"]
    cache = current_app.extensions.setdefault("flowgate.backlog", {})
    now = time.monotonic()
    counted_at, backlog = cache.get(flow_id, (0.0, 0))
    if fresh or now - counted_at > 1.0:
        backlog = db.session.execute(
            select(func.count(Run.id)).where(
                Run.status.in_(_BACKLOG_STATUSES), Run.flow_id == flow_id
            )
        ).scalar_one()
        cache[flow_id] = (now, backlog)
    if backlog >= limit:
        raise TooManyRequests(
            f"this flow has {backlog} messages waiting (limit {limit}); retry later",
            retry_after=30,
        )


def _event_id(config: Mapping[str, Any], headers: Mapping[str, str], message: Any) -> str | None:
    """The sender's event id, from the declared header or a JSONata expression on the body."""
    header = config.get("event_id_header")
    if header:
        value = headers.get(header)
        if not value:
            raise BadRequest(f"the '{header}' header is required by this flow")
        return value
    expression = config.get("event_id_expression")
    if not expression:
        return None
    try:
        value = runtime.mapping_evaluator().evaluate(expression, message)
    except mapping.MappingError as exc:
        raise BadRequest(f"the event id expression failed: {exc.code}: {exc.message}") from exc
    if value is None or isinstance(value, (dict, list, bool)) or value == "":
        raise BadRequest("the event id expression found no id in this message")
    return str(value)


def _business_key(trigger_config: dict[str, Any], payload: Any) -> str | None:
    expression = trigger_config.get("business_key")
    if not expression:
        return None
    try:
        # In the sandbox: a hostile key expression costs at most its hard limit, not a thread.
        value = runtime.mapping_evaluator().evaluate(expression, payload)
    except mapping.MappingError:
        return None  # a missing key must not cost us the message
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)[:255]


def accept_webhook(
    slug: str, headers: Mapping[str, str], body: bytes, content_type: str | None
) -> Accepted:
    try:
        return _accept(slug, headers, body, content_type)
    except OperationalError as exc:
        db.session.rollback()
        log.error("intake.db_unavailable slug=%s error=%s", slug, exc.__class__.__name__)
        raise Unavailable("the run ledger is unavailable; retry later", retry_after=5) from exc


def _trigger_secrets(slug: str, trigger: Mapping[str, Any]) -> dict[str, str]:
    """The signing secrets of the trigger's webhook connection; {} (fail closed) if unusable."""
    connection_id = trigger.get("connection_id")
    if connection_id is None:
        return {}
    row = db.session.get(Connection, connection_id)
    if row is None or row.connector_key != "webhook":
        log.error(
            "intake.trigger_connection_unusable slug=%s connection_id=%s", slug, connection_id
        )
        return {}
    try:
        return runtime.secret_box().decrypt(row.secrets_encrypted)
    except ValueError:
        log.error("intake.secrets_undecryptable slug=%s connection_id=%s", slug, connection_id)
        return {}


def _verify(
    slug: str, connector: WebhookTrigger, ctx: ConnectorContext, request: InboundRequest
) -> None:
    try:
        connector.verify(ctx, request)
    except SignatureError as exc:
        # The reason is logged and told to the sender; never a secret or expected signature.
        log.warning("intake.signature_rejected slug=%s reason=%s", slug, exc.message)
        raise BadSignature(exc.message) from exc


def _accept(
    slug: str, headers: Mapping[str, str], body: bytes, content_type: str | None
) -> Accepted:
    try:
        return _accept_on(_live_version(slug), slug, headers, body, content_type)
    except _StaleVersion:
        db.session.rollback()
    # The live version changed under us: look it up again. A burst of rollbacks can retire
    # the fresh one too, and on SQLite the INSERT waits for each rollback's write lock and
    # then finds its version retired, in lockstep with the burst: retry with a growing pause
    # (5, 10, 20 … 80 ms, about 0.4 s in all) before asking the sender to retry.
    for attempt in range(_STALE_RETRIES):
        try:
            return _accept_on(_live_version(slug, fresh=True), slug, headers, body, content_type)
        except _StaleVersion as exc:
            db.session.rollback()
            if attempt == _STALE_RETRIES - 1:
                raise Unavailable(
                    "the flow's live version just changed; retry", retry_after=1
                ) from exc
            time.sleep(min(0.005 * 2**attempt, 0.08))
    raise AssertionError("unreachable")


def _accept_on(
    live: tuple[_LiveFlow, _LiveVersion],
    slug: str,
    headers: Mapping[str, str],
    body: bytes,
    content_type: str | None,
) -> Accepted:
    flow, version = live
    trigger = version.definition.get("trigger") or {}
    if trigger.get("type") != "webhook":
        raise NotFound(f"flow '{slug}' is not triggered by a webhook")
    config = trigger.get("config") or {}
    connector = runtime.registry().create("webhook")
    if not isinstance(connector, WebhookTrigger):  # the registry maps "webhook" elsewhere
        raise TypeError(f"the webhook connector is {type(connector).__name__}, not WebhookTrigger")
    ctx = ConnectorContext(
        connection_config={},
        secrets=_trigger_secrets(slug, trigger),
        step_config=config,
        logger=logging.getLogger("flowgate.connector.webhook"),
        http=None,
    )
    # Authenticate first: an unsigned sender learns nothing about content type, backlog or
    # parsing, and costs no JSON parse. The signature covers the raw bytes as received.
    _verify(slug, connector, ctx, InboundRequest(headers=headers, body=body, payload=None))
    check_content_type(content_type)
    check_backlog(flow.id)
    payload = parse_json_body(body, current_app.config["FLOWGATE_MAX_JSON_DEPTH"])
    mapping.known_json(payload)  # strictly parsed: the key expressions need not walk it again

    request = InboundRequest(headers=headers, body=body, payload=payload)
    try:
        messages = connector.accept(ctx, request)
    except SignatureError as exc:  # accept re-verifies; a Stripe timestamp may just expire
        raise BadSignature(exc.message) from exc
    except ConnectorError as exc:
        raise BadRequest(exc.message) from exc
    if len(messages) != 1:
        raise BadRequest("a webhook delivery must carry exactly one message")
    message = messages[0]

    event_id = _event_id(config, headers, message)
    return record_run(
        flow,
        version,
        trigger_kind="webhook",
        message=message,
        payload_hash=hashlib.sha256(body).hexdigest(),
        event_id=event_id,
        check_live=True,
        # The body is the message (strictly parsed, so valid JSON): stored as sent.
        payload_text=body.decode("utf-8") if message is payload else None,
        own_transaction=True,  # nothing else is staged in this request's session
    )


def record_run(
    flow: Flow | _LiveFlow,
    version: FlowVersion | _LiveVersion,
    *,
    trigger_kind: str,
    message: Any,
    payload_hash: str | None = None,
    event_id: str | None = None,
    check_live: bool = False,
    payload_text: str | None = None,
    own_transaction: bool = False,
) -> Accepted:
    """Record one accepted message as a queued Run, commit, then enqueue its id.

    Every trigger (webhook, schedule, poll, event, manual) goes through here, so the ledger
    rules hold for all of them: committed before acknowledged, deduplicated by the event id
    (a unique constraint), enqueued after the commit (the sweep covers a lost enqueue).

    ``check_live``: the version came from a cache; check in this transaction that it is
    still live, else raise ``_StaleVersion`` with nothing written. ``payload_text``: the
    message as JSON text, when the caller has it (a webhook body that is the message).
    ``own_transaction``: the caller has nothing else in this session's unit of work (the
    webhook), so on PostgreSQL the run commits on its own, at the driver, in one round trip.
    Otherwise the run joins the session's transaction and its commit also carries what the
    caller staged before (a manual run's audit event, a poller's state).
    """
    config = (version.definition.get("trigger") or {}).get("config") or {}
    if payload_hash is None:
        canonical = json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        payload_hash = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    business_key = _business_key(config, message)
    keys = search_keys.extract(message, business_key)
    # No ORM unit of work, identity map or ~10 RunKey objects per message: the run with
    # RETURNING of its id and its search keys, one statement at the driver on PostgreSQL
    # (_RECORD_RUN_PG), prebuilt Core statements on SQLite (_INSERT_RUN); with
    # ``check_live`` the liveness check is part of the INSERT.
    row = {
        "flow_id": flow.id,
        "flow_version_id": version.id,
        "trigger_kind": trigger_kind,
        "payload": message,
        "payload_hash": payload_hash,
        "idempotency_key": event_id[:255] if event_id else None,
        "business_key": business_key,
        "status": RunStatus.QUEUED.value,
        "enqueued_at": utcnow(),
    }
    postgres = db.engine.dialect.name == "postgresql"
    try:
        if postgres:
            # One statement; on its own it commits as it executes (see autocommitted).
            if payload_text is None:
                payload_text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
            # The keys as one JSON text: psycopg adapts a list of str element by element
            # (about 25 µs a message for ten keys, against 5 µs for orjson and a str).
            values = json_codec.dumps_text(keys)
            params = {**row, "payload": payload_text, "values": values, "check_live": check_live}
            if own_transaction:
                with autocommitted() as cursor:
                    found = cursor.execute(_RECORD_RUN_PG, params).fetchone()
            else:
                connection = db.session.connection()
                found = connection.exec_driver_sql(_RECORD_RUN_PG, params).first()
            run_id = None if found is None else found[0]
        else:  # SQLite: no INSERT in a WITH; executemany of the keys is in-process and cheap
            statement = _INSERT_RUN_IF_LIVE if check_live else _INSERT_RUN
            run_id = db.session.execute(statement, row).scalar_one_or_none()
            if run_id is not None and keys:
                db.session.execute(_INSERT_KEYS, [{"run_id": run_id, "value": v} for v in keys])
        if run_id is None:  # nothing written: the version is no longer live
            raise _StaleVersion(version.id)
        if not (postgres and own_transaction):
            db.session.commit()  # the run, with whatever the caller staged before it
    except IntegrityError:
        db.session.rollback()
        return _duplicate(flow.id, event_id, payload_hash)
    try:
        enqueue_runs(current_app._get_current_object(), [run_id])
    except Exception:  # Redis down: the run is committed; the sweep will enqueue it
        log.warning("intake.enqueue_failed run_id=%s (the sweep will retry)", run_id, exc_info=True)
    return Accepted(run_id)


def _duplicate(flow_id: int, event_id: str | None, payload_hash: str) -> Accepted:
    original = db.session.execute(
        select(Run.id, Run.payload_hash).where(
            Run.flow_id == flow_id, Run.idempotency_key == event_id
        )
    ).first()
    if original is None:  # not a dedupe conflict after all: surface it, do not swallow it
        raise Unavailable("the run could not be stored; retry later", retry_after=1)
    if original.payload_hash != payload_hash:
        log.warning(
            "intake.idempotency_conflict flow_id=%s event_id=%s original_run_id=%s",
            flow_id,
            event_id,
            original.id,
        )
        raise Invalid(
            f"event id '{event_id}' was already received with a different body",
            original_run_id=original.id,
        )
    return Accepted(original.id, duplicate=True)


# Webhooks refused (400, 401, 413, 415, 422, 429, 503) per flow and status: nothing of a
# refused message is stored, so this hash is what tells operations that a sender's
# messages are being turned away (``flowgate_webhooks_refused_total``). Only slugs of live
# flows are counted: anyone can make up slugs (a 413 or a 503 comes before the flow is
# looked up), and the hash must stay one field per flow and status.
REFUSED_KEY = "flowgate:webhooks_refused"


def count_refusal(slug: str, status: int) -> None:
    """One HINCRBY (and the cached live-flow lookup); a failure of either, a Redis or
    database outage, must not turn a refusal into an error: the refusal goes uncounted."""
    if status == 404:
        return
    try:
        _live_version(slug)  # raises NotFound for a slug that is no live flow
        get_redis(current_app).hincrby(REFUSED_KEY, f"{slug}|{status}", 1)
    except Exception as exc:
        log.debug("intake.refusal_not_counted error=%s", exc.__class__.__name__)


def refusal_counts(client: Any) -> dict[tuple[str, int], int]:
    """(flow slug, HTTP status) → webhooks refused since Redis last lost its data."""
    counts: dict[tuple[str, int], int] = {}
    for field, value in client.hgetall(REFUSED_KEY).items():
        slug, _, status = field.decode().rpartition("|")
        if status.isdigit():
            counts[(slug, int(status))] = int(value)
    return counts
