"""Evaluate JSONata mappings: the only module in Flowgate that imports jsonata-python.

Public API: ``MappingError``, ``Limits``, ``check_expression``, ``evaluate`` and
``evaluate_condition``; ``format_number`` and ``RESERVED_PREFIX`` for ``flows.compiled``,
which reproduces this module's answers without the library. Every failure, whatever the
library raised, comes out as a ``MappingError`` with a JSONata code (``S0203``,
``T2001``, ``D1012`` timeout, ``D1011`` depth...) or one of ours: ``F0001`` internal
error, ``F0002`` output too large, ``F0003`` output not JSON, ``F0004`` expression too
long, ``F0005`` reserved name (``__evaluate_``, which would let an expression switch off
its own limits).

What this module adds on top of jsonata-python 0.7.1 (see shared/docs/jsonata-python.md):

* Compiled expressions are cached (LRU, ``CACHE_SIZE`` entries). The evaluator keeps
  state on the compiled object (the input and frame being evaluated, the parser used by
  partial application) and reads the thread's "current" instance for ``$now()`` and
  ``$eval()``, so each cached object has its own lock and is prepared before every use.
* Timeout and depth are enforced by our own evaluator hooks (``_Bounds``), fresh for each
  evaluation: the library's have a clock that starts at compile time and a depth count that
  leaks, after a D1011 abort and, within one evaluation, as the data grows.
* ``$string()`` and ``&`` format numbers like the reference (jsonata-js 2.2): integers in
  full (``$string(1234567890123456)`` is ``"1234567890123456"``, not ``1.23456789012346e+15``),
  other numbers to 15 significant digits, non-ASCII text unescaped. Flowgate goes one step
  further for ids: a Python int below 1e21, or one a double cannot hold (it can only have
  come from the input), keeps every digit, where the reference would print the nearest
  double. Numbers in the *output* are never reformatted: they are returned as Python numbers.
* The library's debug ``print`` calls are routed to this module's logger, and its
  tokenizer no longer crashes on a comment that ends the expression.
* Input must be plain JSON-able Python; ``None`` as the whole input means "no input"
  (JSONata undefined). Output is fresh plain Python (dict/list/str/int/float/bool/None,
  object key order kept); JSONata null and undefined both become ``None``.

Known gap: the timeout and depth checks are cooperative, made when the evaluator enters
or leaves an expression node. A single long native call runs past them: a catastrophic
regex, ``$pad("", 2e8)`` (memory too), ``$sort`` of millions of items,
``$sum([1..10000000])`` (about 30 s: the signature check inspects every item). For hard
limits, ``flows.sandbox`` runs this module in killable child processes with a wall clock
and a memory rlimit; the worker and the web layer evaluate through it. Also, the first use
imports jsonata-python (about 45 ms), which sets the process recursion limit to 10,000.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from types import SimpleNamespace
from typing import Any

from connectors import json_codec

log = logging.getLogger(__name__)

CACHE_SIZE = 512
"""Compiled expressions kept (least recently used evicted)."""

RESERVED_PREFIX = "__evaluate_"  # the evaluator calls $__evaluate_entry / $__evaluate_exit
_VALUE_IN_MESSAGE = 80  # longest data value quoted in an error message (data may be PII)


class MappingError(Exception):
    """A mapping failed to compile or evaluate; safe to show to the flow's author."""

    code: str
    position: int | None
    message: str

    def __init__(self, code: str, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.position = position

    def __str__(self) -> str:
        where = f" at position {self.position}" if self.position is not None else ""
        return f"{self.code}{where}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        # The default pickling would call MappingError(message) and fail (RQ, multiprocessing).
        return (type(self), (self.code, self.message, self.position))

    def to_dict(self) -> dict[str, Any]:
        """The error as a JSON-able dict, e.g. for a 422 response."""
        return {"code": self.code, "position": self.position, "message": self.message}


@dataclass(frozen=True)
class Limits:
    """Per-evaluation bounds. Timeout and depth are cooperative (see the module docstring)."""

    timeout_ms: int = 1000
    max_depth: int = 200
    max_output_bytes: int = 1_000_000
    max_expression_chars: int = 20_000

    def __post_init__(self) -> None:
        for name in ("timeout_ms", "max_depth", "max_output_bytes", "max_expression_chars"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive integer, got {value!r}")


def check_expression(expression: str) -> MappingError | None:
    """Compile ``expression`` (syntax only) and return its error, or None if it is valid.

    The compiled expression is cached, so a later ``evaluate`` of it skips the parse.
    """
    try:
        _check_expression_text(expression, Limits())
        _compiled(expression)
    except MappingError as error:
        return error
    return None


def evaluate(
    expression: str,
    data: Any,
    *,
    bindings: Mapping[str, Any] | None = None,
    limits: Limits = Limits(),
) -> Any:
    """Evaluate ``expression`` against ``data``; return plain JSON-able Python.

    ``bindings`` become variables: ``{"rate": 0.2}`` is ``$rate`` in the expression.
    JSONata undefined (no match) is returned as ``None``. Raises ``MappingError``.
    """
    raw = _evaluate_raw(expression, data, bindings, limits)
    return _plain(raw, limits.max_output_bytes)


def evaluate_condition(expression: str, data: Any, *, limits: Limits = Limits()) -> bool:
    """Evaluate a filter condition: JSONata ``$boolean()`` of the result, undefined is False."""
    raw = _evaluate_raw(expression, data, None, limits)
    try:
        return bool(_library().Functions.to_boolean(raw))
    except Exception as exc:  # e.g. RecursionError on an absurdly nested result
        raise _mapping_error(exc) from exc


# --- evaluation ------------------------------------------------------------------------


class _Compiled:
    """A cached compiled expression and the lock that gives one thread at a time use of it."""

    __slots__ = ("expr", "lock")

    def __init__(self, expr: Any) -> None:
        self.expr = expr
        self.lock = threading.Lock()


_cache: OrderedDict[str, _Compiled] = OrderedDict()
_cache_lock = threading.Lock()


def _evaluate_raw(
    expression: str, data: Any, bindings: Mapping[str, Any] | None, limits: Limits
) -> Any:
    """Evaluate and return the library's raw result (sequences, NULL_VALUE, functions...)."""
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be a Limits, got {type(limits).__name__}")
    _check_expression_text(expression, limits)
    _check_json_input(data, "input data")
    variables = dict(bindings) if bindings is not None else {}
    for name, value in variables.items():
        if not isinstance(name, str):
            raise MappingError("F0001", f"binding names must be strings, got {name!r}")
        _check_json_input(value, f"binding ${name}")
    compiled = _compiled(expression)
    if compiled.lock.acquire(blocking=False):
        try:
            return _run(compiled.expr, data, variables, limits)
        finally:
            compiled.lock.release()
    # Another thread is evaluating the cached object. A private copy costs one compile
    # (a few ms) where waiting could cost up to that thread's whole timeout.
    return _run(_compile(expression), data, variables, limits)


def _run(expr: Any, data: Any, variables: dict[str, Any], limits: Limits) -> Any:
    """Evaluate a compiled expression that this thread has to itself."""
    lib = _library()
    current = lib.Jsonata.CURRENT  # threading.local
    try:
        # The evaluator works on the thread's "current" instance, not on `expr`: $now()
        # and $millis() read its timestamp, $eval() and higher-order calls its environment.
        # The library sets it only when an expression is *built*, so with a cache it would
        # be whichever expression this thread compiled last (a stale $now(), and another
        # thread's object). Point it at `expr`, which our lock makes ours.
        current.jsonata = expr
        # Partial application ($f(?, 1)) parses a small expression at run time with
        # expr.parser, a per-thread object of the thread that compiled `expr`.
        expr.parser = lib.Jsonata.get_parser()
        # Bindings go into a fresh frame for this evaluation, and so do `$` (the input,
        # otherwise bound on the cached object and kept alive) and the evaluator's hooks.
        bounds = _Bounds(limits, lib.JException)
        frame = {
            **variables,
            RESERVED_PREFIX + "entry": bounds.enter,
            RESERVED_PREFIX + "exit": bounds.leave,
        }
        return expr.evaluate(data, frame)
    except Exception as exc:
        raise _mapping_error(exc) from exc
    finally:
        vars(current).pop("jsonata", None)


class _Bounds:
    """The evaluator's node entry and exit hooks: a deadline and a nesting-depth limit.

    Used instead of the library's Timebox (``Frame.set_runtime_bounds``), which has three
    bugs: its clock starts when the expression is compiled; an evaluation aborted by D1011
    leaves its depth on the compiled object; and within one evaluation the depth creeps up
    with the data. The evaluator sets ``is_parallel_call`` on a frame while it evaluates the
    second and later entries of an array or object constructor and never clears it, so
    Timebox counts a node's entry but skips its exit: ``$map(line_items, function($l){
    {'sku': $l.sku, 'qty': $l.quantity} })`` exceeds depth 200 on a 250-line order. The
    evaluation is sequential, so +1 on entry and -1 on exit is exactly the nesting depth.
    """

    __slots__ = ("deadline", "depth", "error", "max_depth", "timeout_ms")

    def __init__(self, limits: Limits, error: type[Exception]) -> None:
        self.timeout_ms = limits.timeout_ms
        self.deadline = time.monotonic() + limits.timeout_ms / 1000
        self.max_depth = limits.max_depth
        self.depth = 0
        self.error = error  # JException, so the evaluator adds the position as it unwinds

    def enter(self, _expr: Any, _input: Any, _environment: Any) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise self.error("D1011", -1)
        if time.monotonic() > self.deadline:
            raise self.error("D1012", -1, self.timeout_ms)

    def leave(self, _expr: Any, _input: Any, _environment: Any, _result: Any) -> None:
        self.depth -= 1
        if time.monotonic() > self.deadline:
            raise self.error("D1012", -1, self.timeout_ms)


def _compiled(expression: str) -> _Compiled:
    """The cached compiled form of ``expression``, compiling it on a miss."""
    with _cache_lock:
        entry = _cache.get(expression)
        if entry is not None:
            _cache.move_to_end(expression)
            return entry
    # Compile outside the cache lock so a slow parse does not hold up other expressions.
    fresh = _Compiled(_compile(expression))
    with _cache_lock:
        entry = _cache.setdefault(expression, fresh)  # another thread may have won the race
        _cache.move_to_end(expression)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return entry


def _compile(expression: str) -> Any:
    """Parse ``expression`` into a new library object; syntax errors become MappingError."""
    lib = _library()
    try:
        expr = lib.Jsonata(expression)
    except Exception as exc:  # JException, and RecursionError for absurd nesting
        raise _mapping_error(exc) from exc
    finally:
        # The constructor makes the new object the thread's "current" one; nothing should
        # use it before _run() sets it, and the thread-local should not keep it alive.
        vars(lib.Jsonata.CURRENT).pop("jsonata", None)
    expr.set_validate_input(False)  # _check_json_input() does it, several times faster
    expr.set_output_convert_nulls(False)  # _plain() maps null and undefined in its one walk
    return expr


def _check_expression_text(expression: Any, limits: Limits) -> None:
    if not isinstance(expression, str):
        raise MappingError("F0001", f"expression must be a string, not {type(expression).__name__}")
    if len(expression) > limits.max_expression_chars:
        # Besides sheer cost, a long expression can nest deep enough to exhaust the stack.
        raise MappingError(
            "F0004",
            f"expression is {len(expression)} characters long;"
            f" the limit is {limits.max_expression_chars}",
        )


_SCALARS = frozenset({str, int, bool, type(None)})


def _check_json_input(value: Any, what: str) -> None:
    """Reject anything that is not plain JSON-able Python (iterative: no depth limit)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is float or isinstance(item, float):
            if not math.isfinite(item):
                raise MappingError("F0001", f"{what} is not JSON: it contains {item!r}")
        elif isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    raise MappingError("F0001", f"{what} is not JSON: an object key is {key!r}")
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif not isinstance(item, (str, int)):  # subclasses of the scalars are fine
            raise MappingError("F0001", f"{what} is not JSON: it contains a {kind.__name__}")


class _LastChecked(threading.local):
    value: Any = None


# The container this thread checked (or was told is JSON) last. A worker evaluates a run's
# filter and then its map on the same payload object, and intake's business-key expression
# runs on the document it has just parsed: each is checked once, not per evaluation. Safe
# because evaluations never change their input and the engine never mutates a payload.
_last_checked = _LastChecked()


def check_json_input_once(value: Any, what: str) -> None:
    """``_check_json_input``, skipped for the container this thread checked last."""
    if value is not _last_checked.value or not isinstance(value, (dict, list)):
        _check_json_input(value, what)
        if isinstance(value, (dict, list)):
            _last_checked.value = value


def known_json(value: Any) -> None:
    """Tell the input check that ``value`` came from a strict JSON parse (no NaN or
    Infinity, string keys only): its next evaluation on this thread skips the walk."""
    if isinstance(value, (dict, list)):
        _last_checked.value = value


class _TooLarge(Exception):
    pass


def _plain(raw: Any, max_bytes: int) -> Any:
    """Copy the library's result into plain JSON-able Python, within ``max_bytes``.

    The copy tracks a lower bound of the serialized size so that a huge result (a
    ten-million-item range) is refused early; the exact size then comes from json.dumps.
    """
    try:
        result = _PlainCopier(_library(), max_bytes).copy(raw)
        size: int | None = _json_size(result)
    except _TooLarge:
        size = None
    except RecursionError as exc:
        raise MappingError("F0003", "the result is nested too deeply") from exc
    if size is None or size > max_bytes:
        raise MappingError(
            "F0002",
            f"the result is larger than the {max_bytes:,} bytes allowed"
            + (f" ({size:,} bytes as JSON)" if size else ""),
        )
    return result


def _json_size(result: Any) -> int:
    """Bytes of ``result`` as compact UTF-8 JSON (a lone surrogate counted as 3)."""
    try:
        return len(json_codec.dumps(result))
    except UnicodeEncodeError:
        text = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
        return len(text.encode("utf-8", "surrogatepass"))


class _PlainCopier:
    """Deep-copies a raw result into JSON types; ``budget`` is what the bytes allow."""

    def __init__(self, lib: SimpleNamespace, max_bytes: int) -> None:
        self.lib = lib
        self.budget = max_bytes

    def copy(self, value: Any) -> Any:
        if isinstance(value, dict):
            result = self._object(value)
        elif isinstance(value, list):
            result = self._array(value)
        else:
            result = self._scalar(value)
        if self.budget < 0:
            raise _TooLarge
        return result

    def _scalar(self, value: Any) -> Any:
        # str(), int()... also turn subclasses into the plain types.
        if isinstance(value, str):
            self.budget -= len(value) + 2
            return str(value)
        if value is None or value is self.lib.Utils.NULL_VALUE:
            self.budget -= 4
            return None
        if isinstance(value, bool):
            self.budget -= 4
            return bool(value)
        if isinstance(value, int):
            self.budget -= 1
            return int(value)
        if isinstance(value, float) and math.isfinite(value):
            self.budget -= 1
            return float(value)
        raise MappingError("F0003", f"the result contains {_describe(value)}, which is not JSON")

    def _object(self, value: dict[Any, Any]) -> dict[str, Any]:
        self.budget -= 2
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise MappingError("F0003", f"the result has a non-string key {key!r}")
            self.budget -= len(key) + 4
            result[str(key)] = self.copy(item)
        return result

    def _array(self, value: list[Any]) -> list[Any]:
        self.budget -= 2
        items: Any = value
        if isinstance(value, self.lib.Utils.RangeList):
            # RangeList.__iter__ stops one short of the end; indexing is right.
            items = (value[i] for i in range(len(value)))
        result = []
        for item in items:
            self.budget -= 1
            result.append(self.copy(item))
        return result


def _describe(value: Any) -> str:
    lib = _library()
    if isinstance(value, float):
        return f"the number {value}"
    if lib.is_function_like(value):
        return "a function"
    return f"a {type(value).__name__}"


# --- errors --------------------------------------------------------------------------

_CODE = re.compile(r"[A-Z]\d{4}")
_PLACEHOLDER = re.compile(r"\{\{\{?\w+\}?\}\}")


def _mapping_error(exc: BaseException) -> MappingError:
    """Translate anything the library raised into a MappingError."""
    if isinstance(exc, MappingError):
        return exc
    lib = _library()
    if isinstance(exc, lib.JException):
        code = exc.error if isinstance(exc.error, str) and _CODE.fullmatch(exc.error) else None
        location = exc.location if isinstance(exc.location, int) and exc.location >= 0 else None
        if code is None:  # a few library errors carry a sentence instead of a code
            return MappingError("F0001", _clip(str(exc.error), 200), location)
        return MappingError(code, _jexception_message(exc, lib), location)
    if isinstance(exc, RecursionError):
        # Python's own stack ran out before the depth limit did (deep data or nesting).
        return MappingError(
            "D1011", "Stack overflow: the expression or the data is nested too deeply"
        )
    if isinstance(exc, (ZeroDivisionError, OverflowError)):
        # The reference computes Infinity here and then refuses it as out of range.
        return MappingError("D1001", "Number out of range (division by zero or overflow)")
    # ValueError, TypeError, KeyError...: gaps in the library where the reference raises a
    # coded error ($number("abc"), $sort of objects). The traceback tells a library gap
    # from a bug of ours; debug level, as the text may quote the data.
    log.debug("jsonata-python raised %r", exc, exc_info=exc)
    return MappingError("F0001", _clip(f"evaluation failed: {exc}", 200))


def _jexception_message(exc: Any, lib: SimpleNamespace) -> str:
    """The library's message template with its inserts rendered as JSON, not Python repr."""
    template = lib.JException.error_codes.get(exc.error)
    if template is None:
        return _clip(str(exc), 200)
    if template == "{{{message}}}":
        return _clip(str(exc.current), 200)
    # The Java port replaced every "function" in the reference's messages with "Object".
    template = template.replace(" Object", " function")
    inserts = iter([exc.current, exc.expected, exc.extra])
    return _PLACEHOLDER.sub(lambda _: _render(next(inserts, None)), template)


def _render(value: Any) -> str:
    lib = _library()
    if isinstance(value, str):
        text = value
    elif value is None:
        text = "undefined"
    elif lib.is_function_like(value):
        text = "function"
    else:
        try:
            text = _json_text(value, None, "")
        except Exception:
            text = type(value).__name__
    return _clip(text, _VALUE_IN_MESSAGE)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- numbers and $string() -------------------------------------------------------------

_FIFTEEN_DIGITS = Context(prec=15, rounding=ROUND_HALF_UP)
_SURROGATE = re.compile("[\ud800-\udfff]")


def format_number(value: int | float) -> str:
    """A number as the reference's $string() writes it, but with Flowgate's id rule."""
    if isinstance(value, int):
        if abs(value) < 10**21:
            # Every digit (ids). The reference agrees up to 2**53; above that it would
            # print the nearest double, which has already lost the id.
            return str(value)
        try:
            as_double = float(value)
        except OverflowError:
            return str(value)
        # A double that is an integer (1e300 is parsed into an int) keeps the reference
        # format; an int no double can hold came from the input data: keep its digits.
        return _js_number_text(as_double) if as_double == value else str(value)
    if not math.isfinite(value):
        return "Infinity" if value > 0 else "-Infinity" if value < 0 else "NaN"
    if value.is_integer():
        return _js_number_text(value)  # the reference does not round integers
    # jsonata-js: Number(value.toPrecision(15)). toPrecision rounds half away from zero.
    return _js_number_text(float(_FIFTEEN_DIGITS.plus(Decimal(value))))


def _js_number_text(value: float) -> str:
    """JavaScript's Number.prototype.toString() for a finite double."""
    if value == 0:
        return "0"  # also for -0, like JavaScript
    # repr() gives the shortest digits that round-trip, as JavaScript does.
    sign, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = int(exponent) + k  # the decimal point sits after n digits
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
        text = f"{mantissa}e{'+' if n >= 1 else '-'}{abs(n - 1)}"
    return ("-" if value < 0 else "") + text


def _stringify(arg: Any, prettify: bool) -> str:
    """Replacement for ``Functions._string``: JSON.stringify with the reference's replacer.

    The library's version formats a top-level number with 15 digits (so 16-digit ids come
    out as 1.23456789012346e+15), leaves nested numbers unrounded, escapes non-ASCII text
    and fails on regexes. This runs for every ``&`` operand that is not a string.
    """
    if type(arg) is int:  # the common case: an id or a quantity
        return format_number(arg)
    if not isinstance(arg, (str, int, float, dict, list)) and _library().is_function_like(arg):
        return ""
    if isinstance(arg, float) and not math.isfinite(arg):
        raise _library().JException("D3001", -1, arg)
    text = _json_text(arg, "  " if prettify else None, "")
    if _SURROGATE.search(text):  # lone surrogates: escaped, as JSON.stringify does
        text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def _json_text(value: Any, indent: str | None, prefix: str) -> str:
    """JSON.stringify(value, replacer, indent) as jsonata-js calls it (functions give "")."""
    lib = _library()
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise lib.JException("D1001", -1, value)
        return format_number(value)
    if isinstance(value, dict):
        items = [(json.dumps(str(k), ensure_ascii=False), v) for k, v in value.items()]
        opener, closer = "{", "}"
    elif isinstance(value, list):
        if isinstance(value, lib.Utils.RangeList):
            value = [value[i] for i in range(len(value))]
        items = [(None, v) for v in value]
        opener, closer = "[", "]"
    elif value is None or value is lib.Utils.NULL_VALUE:
        return "null"
    elif lib.is_function_like(value):
        return '""'
    else:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    if not items:
        return opener + closer
    inner = prefix + indent if indent is not None else ""
    colon = ": " if indent is not None else ":"
    parts = [
        (key + colon if key is not None else "") + _json_text(item, indent, inner)
        for key, item in items
    ]
    if indent is None:
        return opener + ",".join(parts) + closer
    return f"{opener}\n{inner}" + f",\n{inner}".join(parts) + f"\n{prefix}{closer}"


# --- the library, imported and patched once --------------------------------------------

_library_lock = threading.Lock()
_lib: SimpleNamespace | None = None


def _library() -> SimpleNamespace:
    """Import jsonata-python on first use (it costs ~45 ms) and apply our patches once."""
    global _lib
    if _lib is None:
        with _library_lock:
            if _lib is None:
                _lib = _load_library()
    return _lib


def _load_library() -> SimpleNamespace:
    from jsonata import functions as jfunctions
    from jsonata import jsonata as jcore
    from jsonata import parser as jparser
    from jsonata import tokenizer as jtokenizer
    from jsonata.jexception import JException
    from jsonata.utils import Utils

    # Some error paths print to stdout ("Proc not found ..." before T1006), and the
    # parser prints when its debug flag is on. A module-level `print` shadows the builtin
    # for that module only: no process-wide redirect of sys.stdout, which would be
    # neither thread-safe nor ours to touch.
    jcore.print = _library_print
    jparser.print = _library_print
    # $string() and `&` stringify through Functions._string (see _stringify).
    jfunctions.Functions._string = staticmethod(_stringify)
    jtokenizer.Tokenizer.next = _guard_tokenizer(jtokenizer.Tokenizer.next, JException)
    jparser.Parser.parse = _refuse_hook_names(jparser.Parser.parse)

    def is_function_like(value: Any) -> bool:
        return (
            Utils.is_function(value)
            or isinstance(value, jparser.Parser.Symbol)
            or (
                not isinstance(value, (str, int, float, dict, list))
                and jfunctions.Functions.is_regex(value)
            )
        )

    return SimpleNamespace(
        Jsonata=jcore.Jsonata,
        JException=JException,
        Utils=Utils,
        Functions=jfunctions.Functions,
        is_function_like=is_function_like,
    )


def _guard_tokenizer(next_token: Any, jexception: type[Exception]) -> Any:
    """Wrap ``Tokenizer.next``, which indexes past the end of the text after a comment.

    Unpatched, ``total /* gross */`` (a comment ending the expression) and an unclosed
    ``/*`` both fail with IndexError. The reference accepts the first and reports S0106
    for the second; any other overrun is an unexpected end of expression (S0207).
    """

    def next_guarded(self: Any, prefix: bool) -> Any:
        start = self.position
        try:
            return next_token(self, prefix)
        except IndexError:
            rest = self.path[start:]
            comment = rest.lstrip(" \t\n\r")
            if comment.startswith("/*") and "*/" in comment[2:]:
                self.position = self.length
                return None  # the comment was the end of the expression
            if comment.startswith("/*"):
                raise jexception("S0106", start + len(rest) - len(comment)) from None
            raise jexception("S0207", self.length) from None

    return next_guarded


def _refuse_hook_names(parse: Any) -> Any:
    """Wrap ``Parser.parse`` so that no expression can name the evaluator's hooks.

    The timeout and depth checks are whatever ``$__evaluate_entry`` and ``$__evaluate_exit``
    are bound to in the current frame, so ``($__evaluate_entry := undefined; ...)`` or a
    lambda parameter of that name would switch them off. All parsing, including the text
    given to ``$eval()``, goes through here.
    """

    def parse_checked(self: Any, source: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(source, str) and RESERVED_PREFIX in source:
            position = source.index(RESERVED_PREFIX)
            raise MappingError(
                "F0005", f"names starting with {RESERVED_PREFIX} are reserved", position
            )
        return parse(self, source, *args, **kwargs)

    return parse_checked


def _library_print(*args: Any, **_ignored: Any) -> None:
    log.debug("jsonata-python: %s", " ".join(str(a) for a in args))
