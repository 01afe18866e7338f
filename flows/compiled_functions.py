"""The values of compiled JSONata and what jsonata-python 0.7.1 does with them, ported.

``flows.compiled`` compiles an expression into closures; this module holds what those
closures compute with, apart from the compiler so that each stays readable: the value model
(``_Seq``, ``_Cons``, ``_NULL``), the work budget (``_Budget``), the library's operations on
values (lookup, truthiness, ``$string`` text, comparison, arithmetic, ``in``, append) and the
function library ``_FUNCTIONS`` with its signature checks (``_SIGNATURES``). Each is a port
of the library's own code, quirks included (``flows.compiled``'s docstring says why); where
the port cannot be sure of the answer it raises ``_Unknown``, and the interpreter answers.

The names keep their underscore: they belong to the ``flows.compiled*`` modules only, whose
public surface is ``flows.compiled``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from typing import Any

from flows.mapping import format_number  # $string()'s number format, ids kept whole

_BUDGET = 100_000  # work units per evaluation: about 40 ms of CPU at most (flows.compiled)
_MAX_STRING = 2_000_000  # longest string an evaluation may build


class _Unknown(Exception):
    """The answer is not certain here: the interpreter must give it."""


class _Seq(list):
    """A JSONata sequence (``JList.sequence``)."""

    __slots__ = ()


class _Cons(list):
    """An array constructor's result as a path step (``JList.cons``): kept whole."""

    __slots__ = ()


class _Null:
    __slots__ = ()

    def __repr__(self) -> str:
        return "null"


_NULL = _Null()
_MISSING = object()


class _Budget:
    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = _BUDGET

    def charge(self, units: int) -> None:
        self.left -= units
        if self.left < 0:
            raise _Unknown("work budget exceeded")


# --- library semantics ----------------------------------------------------------------------


def _is_numeric(value: Any) -> bool:
    """Utils.is_numeric: also refuses infinities (D1001)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        if math.isnan(value):
            return False
        if not math.isfinite(value):
            raise _Unknown("D1001")
        return True
    return False


_EXACT = 2**53  # ints a double holds exactly: _convert_number keeps them as they are


def _convert_number(value: Any) -> Any:
    """Utils.convert_number: integral numbers become ints."""
    if not _is_numeric(value):
        return None
    if int(value) == float(value):
        return int(value)
    return float(value)


def _mangle(result: Any) -> Any:
    """The end of ``Jsonata._eval``: a sequence of 0 is undefined, of 1 is its item."""
    if type(result) is _Seq:
        if not result:
            return None
        if len(result) == 1:
            return result[0]
    return result


def _lookup(value: Any, key: str, budget: _Budget) -> Any:
    if isinstance(value, dict):
        found = value.get(key, _MISSING)
        if found is _MISSING:
            return None
        return _NULL if found is None else found
    if isinstance(value, list):
        budget.charge(len(value))
        result = _Seq()
        for item in value:
            found = _lookup(item, key, budget)
            if found is not None:
                if isinstance(found, list):
                    result.extend(found)
                else:
                    result.append(found)
        return result
    return None


def _to_boolean(value: Any, budget: _Budget) -> Any:
    """Functions.to_boolean (None for undefined)."""
    if value is None:
        return None
    if isinstance(value, list):
        if len(value) == 1:
            return _to_boolean(value[0], budget)
        budget.charge(len(value))
        return any(_to_boolean(item, budget) for item in value)
    if isinstance(value, str):
        return value != ""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value) != 0
    if isinstance(value, dict):
        return bool(value)
    return False  # null


def _text(value: Any) -> str:
    """Functions.string for a defined value, as flows.mapping patches it."""
    if isinstance(value, str):
        return value
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise _Unknown("D3001")
        return format_number(value)
    if value is _NULL:
        return "null"
    raise _Unknown("JSON text of an object or array")


def _checked_text(text: str, budget: _Budget) -> str:
    if len(text) > 64:
        if len(text) > _MAX_STRING:
            raise _Unknown("string too long")
        budget.charge(len(text) >> 6)
    return text


def _deep_equal(left: Any, right: Any, budget: _Budget) -> bool:
    """Utils.is_deep_equal."""
    budget.charge(1)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(
            _deep_equal(a, b, budget) for a, b in zip(left, right, strict=True)
        )
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(
            _deep_equal(left[k], right[k], budget) for k in left
        )
    if isinstance(left, str) and isinstance(right, str):
        budget.charge(len(left) >> 6)
    return left == right and isinstance(left, bool) == isinstance(right, bool)


def _is_comparable(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, str)
        or (not isinstance(value, bool) and isinstance(value, (int, float)))
    )


def _compare(operator: str, left: Any, right: Any) -> Any:
    if not _is_comparable(left) or not _is_comparable(right):
        raise _Unknown("T2010")
    if left is None or right is None:
        return None
    if type(left) is not type(right):
        if isinstance(left, str) or isinstance(right, str):
            raise _Unknown("T2009")
        left, right = float(left), float(right)
    if operator == "<":
        return left < right
    if operator == "<=":
        return left <= right
    if operator == ">":
        return left > right
    return left >= right


def _equal(left: Any, right: Any, budget: _Budget) -> bool:
    if left is None or right is None:
        return False
    if not isinstance(left, bool) and isinstance(left, (int, float)):
        left = float(left)
    if not isinstance(right, bool) and isinstance(right, (int, float)):
        right = float(right)
    return _deep_equal(left, right, budget)


def _unequal(left: Any, right: Any, budget: _Budget) -> bool:
    if left is None or right is None:
        return False  # undefined != anything is false too
    return not _equal(left, right, budget)


def _arithmetic(operator: str, left: Any, right: Any) -> Any:
    if left is not None and not _is_numeric(left):
        raise _Unknown("T2001")
    if right is not None and not _is_numeric(right):
        raise _Unknown("T2002")
    if left is None or right is None:
        return None
    left, right = float(left), float(right)
    if operator == "+":
        result = left + right
    elif operator == "-":
        result = left - right
    elif operator == "*":
        result = left * right
    elif operator == "/":
        result = left / right
    else:
        result = int(math.fmod(left, right))  # sic: the library truncates
    return _convert_number(result)


def _includes(left: Any, right: Any, budget: _Budget) -> bool:
    if left is None or right is None:
        return False
    if not isinstance(right, list):
        right = [right]
    budget.charge(len(right))
    return any(item == left for item in right)  # sic: Python ==, so true in [1]


def _append(first: Any, second: Any, budget: _Budget) -> Any:
    """Functions.append: always a new (plain) array."""
    if first is None:
        return second
    if second is None:
        return first
    result = list(first) if isinstance(first, list) else [first]
    if isinstance(second, list):
        result.extend(second)
    else:
        result.append(second)
    budget.charge(len(result))
    return result


# --- functions ------------------------------------------------------------------------------

_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_ROUNDING = Context(
    prec=28,
    rounding=ROUND_HALF_EVEN,
    Emax=999_999,
    Emin=-999_999,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)  # decimal's default context, fixed: round() would use the thread's current one


def _fn_sum(values: Any) -> Any:
    return None if values is None else sum(values)


def _fn_count(values: Any) -> Any:
    return 0 if values is None else len(values)


def _fn_max(values: Any) -> Any:
    return max(values) if values else None


def _fn_min(values: Any) -> Any:
    return min(values) if values else None


def _fn_average(values: Any) -> Any:
    return sum(values) / len(values) if values else None


def _fn_string(value: Any, _prettify: Any) -> Any:
    return None if value is None else _text(value)  # prettify only changes objects/arrays


def _fn_substring(text: Any, start: Any, length: Any) -> Any:
    if _NULL in (text, start, length):
        raise _Unknown("T0410")
    if text is None:
        return None
    if start is None:
        return text if length is None else ""
    start = int(start)
    length = int(length) if length is not None else None
    if len(text) + start < 0:
        start = 0
    if length is not None and length <= 0:
        return ""
    return _substr(text, start, len(text) if length is None else length)


def _substr(text: str, start: int, length: int) -> str:
    """Functions.substr, step by step."""
    size = len(text)
    if start >= size:
        return ""
    if start < 0:
        start = 0 if size + start < 0 else size + start
    if length < 0:
        return ""
    length = min(length, size)
    return text[start : min(start + length, size)]


def _string_function(operation: Callable[[str], Any]) -> Callable[[Any], Any]:
    def function(text: Any) -> Any:
        if text is None:
            return None
        if text is _NULL:
            raise _Unknown("T0410")
        return operation(text)

    return function


_BLANKS = re.compile("[ \t\n\r]+")


def _trim(text: str) -> str:
    result = _BLANKS.sub(" ", text)
    if result.startswith(" "):
        result = result[1:]
    if result.endswith(" "):
        result = result[:-1]
    return result


def _fn_join(texts: Any, separator: Any) -> Any:
    if texts is None:
        return None
    if separator is None:
        separator = ""
    if not isinstance(separator, str):
        raise _Unknown("T0410")
    return separator.join(texts)


def _fn_number(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and _JSON_NUMBER.fullmatch(value):
        return float(value)
    raise _Unknown("$number of this value")  # null, or text the library reads its own way


def _number_function(operation: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def function(value: Any) -> Any:
        if value is None:
            return None
        if value is _NULL:
            raise _Unknown("T0410")
        return operation(value)

    return function


def _fn_abs(value: Any) -> Any:
    return abs(float(value)) if isinstance(value, float) else abs(int(value))


def _fn_round(value: Any, precision: Any) -> Any:
    if value is None:
        return None
    if value is _NULL or not (precision is None or type(precision) is int):
        raise _Unknown("$round arguments")
    exact = Decimal(str(value))
    if precision is None:
        return float(round(exact))
    return float(exact.quantize(Decimal((0, (1,), -precision)), context=_ROUNDING))


def _fn_not(value: Any) -> Any:
    return None if value is None else not _to_boolean(value, _Budget())


def _fn_boolean(value: Any) -> Any:
    return _to_boolean(value, _Budget())


# name: (signature, implementation, number of parameters of the library's method)
_FUNCTIONS: dict[str, tuple[str, Callable[..., Any], int]] = {
    "sum": ("<a<n>:n>", _fn_sum, 1),
    "count": ("<a:n>", _fn_count, 1),
    "max": ("<a<n>:n>", _fn_max, 1),
    "min": ("<a<n>:n>", _fn_min, 1),
    "average": ("<a<n>:n>", _fn_average, 1),
    "string": ("<x-b?:s>", _fn_string, 2),
    "substring": ("<s-nn?:s>", _fn_substring, 3),
    "lowercase": ("<s-:s>", _string_function(str.casefold), 1),
    "uppercase": ("<s-:s>", _string_function(str.upper), 1),
    "length": ("<s-:n>", _string_function(len), 1),
    "trim": ("<s-:s>", _string_function(_trim), 1),
    "join": ("<a<s>s?:s>", _fn_join, 2),
    "number": ("<(nsb)-:n>", _fn_number, 1),
    "floor": ("<n-:n>", _number_function(lambda v: math.floor(float(v))), 1),
    "ceil": ("<n-:n>", _number_function(lambda v: math.ceil(float(v))), 1),
    "abs": ("<n-:n>", _number_function(_fn_abs), 1),
    "round": ("<n-n?:n>", _fn_round, 2),
    "boolean": ("<x-:b>", _fn_boolean, 1),
    "not": ("<x-:b>", _fn_not, 1),
    "exists": ("<x:b>", lambda value: value is not None, 1),
}


def _symbol(value: Any) -> str:
    """Signature.get_symbol (null counts as missing, like undefined)."""
    known = _SYMBOLS.get(type(value))
    if known is not None:
        return known
    if isinstance(value, str):
        return "s"
    if isinstance(value, bool):
        return "b"
    if isinstance(value, (int, float)):
        return "n"
    if isinstance(value, list):
        return "a"
    if isinstance(value, dict):
        return "o"
    return "m"


_SYMBOLS = {str: "s", bool: "b", int: "n", float: "n", list: "a", dict: "o"}
_SYMBOLS.update({_Seq: "a", _Cons: "a", type(None): "m", _Null: "m"})
_MEMO_SIZE = 256  # argument-type strings remembered per signature


class _Param:
    __slots__ = ("kind", "regex", "context", "subtype")

    def __init__(self, kind: str, regex: str) -> None:
        self.kind = kind
        self.regex = regex
        self.context = False
        self.subtype: str | None = None


class _Signature:
    """Signature.parse_signature and Signature.validate, for the signatures above."""

    def __init__(self, text: str) -> None:
        self.params: list[_Param] = []
        position = 1
        while position < len(text) and text[position] != ":":
            position = self._parse(text, position) + 1
        self.regex = re.compile("".join(f"({p.regex})" for p in self.params))
        self.memo: dict[str, tuple[str, ...] | None] = {}  # argument types -> regex groups

    def _parse(self, text: str, position: int) -> int:
        symbol = text[position]
        if symbol in "snblo":
            self.params.append(_Param(symbol, f"[{symbol}m]"))
        elif symbol in "ax":
            self.params.append(_Param(symbol, "[asnblfom]"))
        elif symbol == "-":
            self.params[-1].context = True
            self.params[-1].regex += "?"
        elif symbol in "?+":
            self.params[-1].regex += symbol
        elif symbol == "(":
            end = text.index(")", position)
            choice = text[position + 1 : end]
            self.params.append(_Param(f"({choice})", f"[{choice}m]"))
            return end
        elif symbol == "<":
            end = text.index(">", position)
            self.params[-1].subtype = text[position + 1 : end]
            return end
        else:
            raise ValueError(f"signature symbol {symbol}")
        return position

    def groups(self, symbols: str) -> tuple[str, ...] | None:
        if symbols in self.memo:
            return self.memo[symbols]
        match = self.regex.fullmatch(symbols)
        groups = match.groups() if match is not None else None
        if len(self.memo) < _MEMO_SIZE:
            self.memo[symbols] = groups  # a dict store is atomic: threads may race harmlessly
        return groups

    def validate(self, args: list[Any], context: Any) -> list[Any]:
        groups = self.groups("".join([_symbol(arg) for arg in args]))
        if groups is None:
            raise _Unknown("T0410")
        validated = []
        index = 0
        for matched, param in zip(groups, self.params, strict=True):
            if matched == "":
                if param.context:
                    if not re.fullmatch(param.regex, _symbol(context)):
                        raise _Unknown("T0411")
                    validated.append(context)
                else:
                    validated.append(args[index] if index < len(args) else None)
                    index += 1
                continue
            for single in matched:
                arg = args[index] if index < len(args) else None
                if param.kind == "a":
                    arg = self._array(param, single, matched, arg)
                validated.append(arg)
                index += 1
        return validated

    @staticmethod
    def _array(param: _Param, single: str, matched: str, arg: Any) -> Any:
        if single == "m":
            return None
        if param.subtype is not None:
            if single != "a" and matched != param.subtype:
                raise _Unknown("T0412")
            if single == "a" and arg:
                first = _symbol(arg[0])
                if first != param.subtype[0] or any(_symbol(item) != first for item in arg):
                    raise _Unknown("T0412")
        return arg if single == "a" else [arg]


_SIGNATURES = {name: _Signature(spec[0]) for name, spec in _FUNCTIONS.items()}
