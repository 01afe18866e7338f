"""Evaluate a bounded subset of JSONata in-process, as a tree of Python closures.

The interpreter (``flows.mapping``, run in ``flows.sandbox`` children for hard limits) costs
about 2.7 ms of CPU for a typical order mapping, most of it walking its environment chain.
Most mappings only rename fields, build objects and arrays, filter, concatenate and add up:
this module compiles that subset once per expression string into nested closures (no
generated source, no ``exec``) and evaluates it in a few hundred microseconds, with an
answer that is exactly ``mapping.evaluate``'s or ``UNKNOWN`` (then the caller asks the
interpreter in the sandbox, which also produces the proper error).

Exactness: the closures port jsonata-python 0.7.1's own evaluator (``evaluate_path``,
``evaluate_step``, ``evaluate_filter``, ``lookup``, ``evaluate_group_expression``, the array
constructor, the operators, ``Signature.validate`` and the function bodies), not the
JSONata spec, because the interpreter's answer is the reference here, quirks included
(``%`` truncates, ``$lowercase`` casefolds, ``in`` uses Python ``==``). What is not ported
raises ``_Unknown``: any syntax outside the subset, any error the interpreter would raise,
``$string``/``&`` of objects and arrays, ``$number`` of anything but JSON number syntax.

The subset: literals, names (also backticked), paths, ``$`` (the context), object and array
constructors, predicates and indexes, blocks, ``& + - * / %``, unary minus, comparisons,
``and or in``, ``c ? a : b``, and the functions in ``_FUNCTIONS``. Not: other variables,
``$$``, ``:=``, lambdas, ``~>``, regexes, wildcards, ``%`` parent, ``#``/``@``, ``^()``,
ranges, transforms, ``?:``/``??``, ``[]``, group-by ``a{...}``.

Values follow the library's model: ``None`` is undefined (and JSON null inside input
arrays), ``_NULL`` is JSON null found by a lookup or written as ``null``, ``_Seq`` is a
sequence (unwrapped at the end of each node: empty is undefined, one item is the item),
``_Cons`` an array constructor's result inside a path (never flattened), any other list an
array.

Bounded: without variables, recursion, ranges or padding, each node's result is at most
linear in its input. Each evaluation also gets a work budget (``_BUDGET`` units of 100 to
450 ns): loops charge, before they start, their item count times the weighted size of what
they evaluate per item; flattening charges the items moved, strings their length; an
overrun, a string longer than ``_MAX_STRING`` or a result larger than ``max_output_bytes``
gives UNKNOWN. Input is assumed already checked as JSON (``mapping._check_json_input``, as
``flows.sandbox`` does before anything else). The nesting of an expression is capped well
below ``Limits.max_depth``, so the interpreter cannot fail on depth where this succeeds.

Thread safety: compiled closures hold no state; each evaluation has its own budget. The
cache (``CACHE_SIZE`` expressions, LRU, also remembering what does not compile) has a lock.

Layout: ``flows.compiled_syntax`` parses an expression into a processed tree and
``flows.compiled_functions`` holds the value model, the library's operations on values and
the function library; this module compiles the tree into closures, evaluates them, copies
and bounds the output, and caches what each expression string compiled to.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from flows.compiled_functions import (
    _EXACT,
    _FUNCTIONS,
    _MISSING,
    _NULL,
    _SIGNATURES,
    _append,
    _arithmetic,
    _Budget,
    _checked_text,
    _compare,
    _Cons,
    _convert_number,
    _equal,
    _includes,
    _is_numeric,
    _lookup,
    _mangle,
    _Seq,
    _text,
    _to_boolean,
    _unequal,
    _Unknown,
)
from flows.compiled_syntax import _Node, _NotCompilable, parse
from flows.mapping import RESERVED_PREFIX, Limits

log = logging.getLogger(__name__)

__all__ = ["CACHE_SIZE", "UNKNOWN", "evaluate", "evaluate_condition"]

UNKNOWN = object()
"""Returned when the answer is not certain: ask the interpreter (``flows.sandbox``)."""

CACHE_SIZE = 512

Fn = Callable[[Any, _Budget], Any]

# --- public API ---------------------------------------------------------------------------


def evaluate(expression: str, data: Any, *, max_output_bytes: int = 1_000_000) -> Any:
    """What ``mapping.evaluate(expression, data)`` returns (undefined as None), or UNKNOWN."""
    if not isinstance(data, dict):
        return UNKNOWN  # arrays are wrapped specially, None means "no input"
    program = _program(expression)
    if program is None:
        return UNKNOWN
    try:
        budget = _Budget()
        return _plain(program(data, budget), max_output_bytes, budget)
    except _EXPECTED:
        return UNKNOWN
    except Exception:  # a bug here: the interpreter still has the answer
        log.exception("compiled JSONata failed unexpectedly on %r", expression[:200])
        return UNKNOWN


def evaluate_condition(expression: str, data: Any) -> Any:
    """What ``mapping.evaluate_condition`` returns (a bool), or UNKNOWN."""
    if not isinstance(data, dict):
        return UNKNOWN
    program = _program(expression)
    if program is None:
        return UNKNOWN
    try:
        budget = _Budget()
        return bool(_to_boolean(program(data, budget), budget))
    except _EXPECTED:
        return UNKNOWN
    except Exception:
        log.exception("compiled JSONata failed unexpectedly on %r", expression[:200])
        return UNKNOWN


# Failures that mean "the interpreter raises here, or may": ArithmeticError covers
# ZeroDivisionError, OverflowError and decimal's InvalidOperation.
_EXPECTED = (_Unknown, ArithmeticError, ValueError, TypeError, RecursionError)

_cache: OrderedDict[str, Fn | None] = OrderedDict()
_cache_lock = threading.Lock()


def _program(expression: Any) -> Fn | None:
    """The compiled closure for ``expression``, or None if it is outside the subset."""
    if not isinstance(expression, str):
        return None
    with _cache_lock:
        if expression in _cache:
            _cache.move_to_end(expression)
            return _cache[expression]
    program = _compile_text(expression)
    with _cache_lock:
        _cache[expression] = program
        _cache.move_to_end(expression)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return program


def _compile_text(expression: str) -> Fn | None:
    # What mapping refuses before evaluating (F0004 too long, F0005 reserved names).
    if len(expression) > Limits.max_expression_chars or RESERVED_PREFIX in expression:
        return None
    try:
        tree = parse(expression)
        program, size = _compile(tree), _size(tree)

        def run(data: Any, budget: _Budget) -> Any:
            budget.charge(size)
            return program(data, budget)

        return run
    except (_NotCompilable, RecursionError):
        return None
    except Exception:  # a bug here: the interpreter still has the answer
        log.exception("compiling JSONata failed unexpectedly: %r", expression[:200])
        return None


# --- filters (Jsonata.evaluate_filter) ------------------------------------------------------


class _Filter:
    """A compiled predicate: a literal number's index, or a test and its weight per item."""

    __slots__ = ("index", "check", "weight")

    def __init__(self, predicate: _Node) -> None:
        # Only a literal number (-1 included: the parser folds it) is an index as such.
        self.index = int(predicate.value) if predicate.kind == "number" else None
        self.check = _compile(predicate)
        self.weight = 2 + _size(predicate)


def _filter(spec: _Filter, value: Any, budget: _Budget) -> Any:
    """Jsonata.evaluate_filter."""
    if value is None:
        value = _Seq()
    elif not isinstance(value, list):
        value = _Seq((value,))
    if spec.index is not None:
        return _index(value, spec.index)
    budget.charge(len(value) * spec.weight)
    check = spec.check
    results = _Seq()
    for index, item in enumerate(value):
        result = check(item, budget)
        if _is_numeric(result):
            result = _Seq((result,))
        if isinstance(result, list) and all(_is_numeric(r) for r in result):
            budget.charge(len(result))
            # The item once per number that points at it (duplicates included).
            hits = sum(_position(number, len(value)) == index for number in result)
            results.extend([item] * hits)
        elif _to_boolean(result, budget):
            results.append(item)
    return results


def _position(number: Any, length: int) -> int:
    position = int(number)  # sic: truncated, not floored
    return position + length if position < 0 else position


def _index(value: list[Any], index: int) -> Any:
    """A literal number as the predicate: the item at that index (an array item whole)."""
    index = _position(index, len(value))
    if not 0 <= index < len(value):
        return _Seq()
    item = value[index]
    if item is None:
        return _Seq((_NULL,))  # JSON null at the index, not out of bounds
    return item if isinstance(item, list) else _Seq((item,))


# --- compiler: processed tree -> closures ---------------------------------------------------


# Work units of one evaluation of a node by kind (1 otherwise), so that a unit costs 100 to
# 450 ns whatever the shape (measured on loops over 100,000 items; a call validates its
# arguments against the signature, an object builds a dict).
_WEIGHTS = {"call": 8, "object": 3, "binary": 2, "path": 2}


def _size(node: Any) -> int:
    """The work units one evaluation of a subtree is charged, per item it is applied to."""
    if not isinstance(node, _Node):
        return 0
    total = _WEIGHTS.get(node.kind, 1)
    total += sum(2 + _size(s) for s in node.predicate) + sum(2 + _size(s) for s in node.stages)
    for item in node.items:
        if isinstance(item, tuple):
            total += _size(item[0]) + _size(item[1])
        else:
            total += _size(item)
    return total


def _compile(node: _Node) -> Fn:
    body = _COMPILERS[node.kind](node)
    if not node.predicate:
        return body
    filters = [_Filter(p) for p in node.predicate]

    def filtered(value: Any, budget: _Budget) -> Any:
        result = body(value, budget)
        for spec in filters:
            result = _filter(spec, result, budget)
        return _mangle(result)

    return filtered


def _compile_literal(node: _Node) -> Fn:
    value = node.value

    def literal(_value: Any, _budget: _Budget) -> Any:
        return value

    return literal


def _compile_context(_node: _Node) -> Fn:
    def context(value: Any, _budget: _Budget) -> Any:
        return _mangle(value)

    return context


def _compile_name(node: _Node) -> Fn:
    key = node.value

    def name(value: Any, budget: _Budget) -> Any:
        return _mangle(_lookup(value, key, budget))

    return name


def _compile_negate(node: _Node) -> Fn:
    operand = _compile(node.items[0])

    def negate(value: Any, budget: _Budget) -> Any:
        result = operand(value, budget)
        if result is None:
            return None
        if not _is_numeric(result):
            raise _Unknown("D1002")
        return _convert_number(-float(result))

    return negate


def _compile_block(node: _Node) -> Fn:
    parts = [_compile(item) for item in node.items]

    def block(value: Any, budget: _Budget) -> Any:
        result = None
        for part in parts:
            result = part(value, budget)
        return result

    return block


def _compile_condition(node: _Node) -> Fn:
    test, then = _compile(node.items[0]), _compile(node.items[1])
    otherwise = _compile(node.items[2]) if node.items[2] is not None else None

    def condition(value: Any, budget: _Budget) -> Any:
        if _to_boolean(test(value, budget), budget):
            return then(value, budget)
        return otherwise(value, budget) if otherwise is not None else None

    return condition


def _compile_array(node: _Node) -> Fn:
    items = [(_compile(item), item.kind == "array") for item in node.items]
    kind = _Cons if node.consarray else list

    def array(value: Any, budget: _Budget) -> Any:
        result = kind()
        for item, nested in items:
            found = item(value, budget)
            if found is None:
                continue
            if not nested and isinstance(found, list):
                budget.charge(len(found))
                result.extend(found)
            else:
                result.append(found)
        return result

    return array


def _compile_call(node: _Node) -> Fn:
    arguments = [_compile(item) for item in node.items]
    signature = _SIGNATURES[node.value]
    _spec, implementation, parameters = _FUNCTIONS[node.value]

    def call(value: Any, budget: _Budget) -> Any:
        args = signature.validate([argument(value, budget) for argument in arguments], value)
        for arg in args:
            if isinstance(arg, (list, str)) and len(arg) > 64:
                budget.charge(len(arg) if isinstance(arg, list) else len(arg) >> 6)
        if len(args) < parameters:
            args.extend([None] * (parameters - len(args)))
        result = implementation(*args)
        kind = type(result)
        if kind is str:
            return _checked_text(result, budget)
        if kind is int and -_EXACT < result < _EXACT:
            return result  # what _convert_number would give, quicker
        return _convert_number(result) if _is_numeric(result) else result

    return call


def _compile_binary(node: _Node) -> Fn:
    operator = node.value
    left, right = _compile(node.items[0]), _compile(node.items[1])
    if operator in ("and", "or"):
        return _compile_logical(operator, left, right)
    if operator == "&":

        def concatenate(value: Any, budget: _Budget) -> Any:
            lhs, rhs = left(value, budget), right(value, budget)
            text = ("" if lhs is None else _text(lhs)) + ("" if rhs is None else _text(rhs))
            return _checked_text(text, budget)

        return concatenate
    apply = _OPERATORS[operator]

    def binary(value: Any, budget: _Budget) -> Any:
        return apply(operator, left(value, budget), right(value, budget), budget)

    return binary


_OPERATORS: dict[str, Callable[[str, Any, Any, _Budget], Any]] = {
    **dict.fromkeys("+-*/%", lambda op, lhs, rhs, _b: _arithmetic(op, lhs, rhs)),
    **dict.fromkeys(("<", "<=", ">", ">="), lambda op, lhs, rhs, _b: _compare(op, lhs, rhs)),
    "=": lambda _op, lhs, rhs, budget: _equal(lhs, rhs, budget),
    "!=": lambda _op, lhs, rhs, budget: _unequal(lhs, rhs, budget),
    "in": lambda _op, lhs, rhs, budget: _includes(lhs, rhs, budget),
}


def _compile_logical(operator: str, left: Fn, right: Fn) -> Fn:
    if operator == "and":

        def conjunction(value: Any, budget: _Budget) -> Any:
            return bool(_to_boolean(left(value, budget), budget)) and bool(
                _to_boolean(right(value, budget), budget)
            )

        return conjunction

    def disjunction(value: Any, budget: _Budget) -> Any:
        return bool(_to_boolean(left(value, budget), budget)) or bool(
            _to_boolean(right(value, budget), budget)
        )

    return disjunction


def _compile_object(node: _Node) -> Fn:
    """The object constructor: evaluate_group_expression over its input."""
    pairs = [(_compile(key), _compile(value)) for key, value in node.items]
    keys_size = sum(_size(key) for key, _value in node.items)
    values_size = sum(_size(value) for _key, value in node.items)

    def grouped(value: Any, budget: _Budget) -> Any:
        items = value if isinstance(value, list) else (value,)
        if not items:
            raise _Unknown("empty group input")  # the library appends to the input itself
        budget.charge(len(items) * keys_size)
        groups = _groups(pairs, items, budget)
        budget.charge(len(groups) * values_size)
        result = {}
        for key, (data, index) in groups.items():
            found = pairs[index][1](data, budget)
            if found is not None:
                result[key] = found
        return result

    literal = [key.value for key, _v in node.items if key.kind == "string" and not key.predicate]
    if len(literal) < len(pairs) or len(set(literal)) < len(literal):
        return grouped
    values = [value for _key, value in pairs]

    def constant_keys(value: Any, budget: _Budget) -> Any:
        # One input, distinct literal keys: the groups are the keys, in order.
        if isinstance(value, list):
            return grouped(value, budget)
        result = {}
        for key, compute in zip(literal, values, strict=True):
            found = compute(value, budget)
            if found is not None:
                result[key] = found
        return result

    return constant_keys


def _groups(pairs: list[tuple[Fn, Fn]], items: Any, budget: _Budget) -> dict[str, list[Any]]:
    """key -> [the items that gave it, index of the pair]; a key from two pairs is D1009."""
    groups: dict[str, list[Any]] = {}
    for item in items:
        for index, (key_of, _value_of) in enumerate(pairs):
            key = key_of(item, budget)
            if key is None:
                continue
            if not isinstance(key, str):
                raise _Unknown("T1003")
            entry = groups.get(key)
            if entry is None:
                groups[key] = [item, index]
            elif entry[1] != index:
                raise _Unknown("D1009")
            else:
                entry[0] = _append(entry[0], item, budget)
    return groups


def _compile_path(node: _Node) -> Fn:
    steps = [_compile_step(step) for step in node.items]
    first_is_context = node.items[0].kind == "context"
    first_whole = node.items[0].consarray
    last = len(steps) - 1

    def path(value: Any, budget: _Budget) -> Any:
        if isinstance(value, list) and not first_is_context:
            sequence = value
        else:
            sequence = _Seq((value,))
        result = None
        for index, step in enumerate(steps):
            if index == 0 and first_whole:
                result = step.evaluate(sequence, budget)  # the array as a whole, no stages
            else:
                result = step.map(sequence, budget, index == last)
            if result is None or not result:
                break
            sequence = result
        return _mangle(result)

    names = _plain_names(node)
    if names is None:
        return path
    return _compile_names(names, path)


def _plain_names(node: _Node) -> list[str] | None:
    if all(s.kind == "name" and not s.stages and not s.predicate for s in node.items):
        return [step.value for step in node.items]
    return None


def _compile_names(names: list[str], general: Fn) -> Fn:
    """``a.b.c`` through objects only: a few dict lookups, same answer as ``general``."""
    *head, tail = names

    def names_path(value: Any, budget: _Budget) -> Any:
        if type(value) is not dict:
            return general(value, budget)
        current = value
        for name in head:
            current = current.get(name)
            if type(current) is not dict:
                if isinstance(current, (list, dict)):
                    return general(value, budget)
                return None  # undefined, null or a scalar: nothing further
        found = current.get(tail, _MISSING)
        if found is _MISSING:
            return None
        return _NULL if found is None else found

    return names_path


class _Step:
    """A path step: its node's closure plus its stages (Jsonata.evaluate_step)."""

    __slots__ = ("evaluate", "stages", "size")

    def __init__(self, evaluate: Fn, stages: list[_Filter], size: int) -> None:
        self.evaluate = evaluate
        self.stages = stages
        self.size = size

    def map(self, sequence: list[Any], budget: _Budget, last: bool) -> Any:
        budget.charge(len(sequence) * self.size)
        results = []
        for item in sequence:
            result = self.evaluate(item, budget)
            for spec in self.stages:
                result = _filter(spec, result, budget)
            if result is not None:
                results.append(result)
        if last and len(results) == 1 and isinstance(results[0], list):
            if type(results[0]) is not _Seq:
                return results[0]  # an array from the data (or a constructor) stays whole
        flat = _Seq()
        for result in results:
            if not isinstance(result, list) or type(result) is _Cons:
                flat.append(result)
            else:
                budget.charge(len(result))
                flat.extend(result)
        return flat


def _compile_step(node: _Node) -> _Step:
    return _Step(_compile(node), [_Filter(p) for p in node.stages], _size(node))


_COMPILERS: dict[str, Callable[[_Node], Fn]] = {
    "path": _compile_path,
    "name": _compile_name,
    "string": _compile_literal,
    "number": _compile_literal,
    "value": _compile_literal,
    "context": _compile_context,
    "negate": _compile_negate,
    "block": _compile_block,
    "condition": _compile_condition,
    "array": _compile_array,
    "object": _compile_object,
    "call": _compile_call,
    "binary": _compile_binary,
}


# --- output ---------------------------------------------------------------------------------


def _plain(value: Any, max_bytes: int, budget: _Budget) -> Any:
    """mapping._plain: a fresh JSON-able copy, or UNKNOWN's exception if over ``max_bytes``.

    The copy counts a lower bound of the JSON size, as mapping does (over the limit: F0002
    there). Every value's JSON takes at most ``_SLACK`` times what the bound counts for it,
    so only a result whose bound is over ``max_bytes / _SLACK`` is serialised to learn its
    exact size. Strings, numbers and booleans are immutable and already plain (the input is
    JSON): only containers are copied, charged to the evaluation's budget (2 units an item,
    measured at 0.4 us an item with the exact size check).
    """
    left = [max_bytes]
    result = _copy(value, left, budget)
    if left[0] < 0:
        raise _Unknown("F0002")
    if (max_bytes - left[0]) * _SLACK > max_bytes:
        text = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
        if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
            raise _Unknown("F0002")
    return result


# JSON bytes per counted byte, at most: a string character takes up to 6 (\u00XX) for 1
# counted, an int of up to 24 digits 25 for 1 (longer ones are counted in full), a float
# 24 for 1, a comma 1 for the 1 of the item after it.
_SLACK = 32
_SHORT_INT = 10**24


def _copy(value: Any, left: list[int], budget: _Budget) -> Any:
    kind = type(value)
    if kind is str:
        left[0] -= len(value) + 2
        return value
    if kind is dict:
        return _copy_object(value, left, budget)
    if kind is list or kind is _Seq or kind is _Cons:
        left[0] -= 2
        budget.charge(2 + 2 * len(value))
        result = [_copy(item, left, budget) for item in value]
        if left[0] < 0:
            raise _Unknown("F0002")
        return result
    if kind is int:
        left[0] -= 1 if -_SHORT_INT < value < _SHORT_INT else len(str(value))
        return value
    if kind is float:
        if not math.isfinite(value):
            raise _Unknown("F0003")
        left[0] -= 1
        return value
    if kind is bool or value is None or value is _NULL:
        left[0] -= 4
        return None if value is _NULL else value
    raise _Unknown(f"not plain JSON: {kind.__name__}")


def _copy_object(value: dict[Any, Any], left: list[int], budget: _Budget) -> dict[str, Any]:
    budget.charge(2 + 2 * len(value))
    counted = 2
    result = {}
    for key, item in value.items():
        if type(key) is not str:
            raise _Unknown("F0003")
        if type(item) is str:
            counted += len(key) + len(item) + 6
            result[key] = item
        else:
            counted += len(key) + 4
            result[key] = _copy(item, left, budget)
    left[0] -= counted
    if left[0] < 0:
        raise _Unknown("F0002")
    return result
