"""Parse the JSONata subset of ``flows.compiled``: tokenizer, Pratt parser, processed tree.

A port of jsonata-python 0.7.1's ``Tokenizer``, ``Parser`` and ``process_ast``, restricted to
the subset that ``flows.compiled`` evaluates (its docstring lists it). Parsing is a stage of
its own: ``parse(text)`` gives the processed tree (``_Node``) that the compiler turns into
closures, or raises ``_NotCompilable`` for anything outside the subset or not valid JSONata.
Calls are accepted only of the functions in ``flows.compiled_functions._FUNCTIONS``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from flows.compiled_functions import _FUNCTIONS, _NULL, _convert_number

_MAX_NESTING = 40  # parser recursion; the interpreter's depth limit is 200 evaluator frames


class _NotCompilable(Exception):
    """The expression is outside the subset (or not valid JSONata)."""


def parse(text: str) -> _Node:
    """The processed tree of ``text``, or ``_NotCompilable`` if it is outside the subset."""
    return _process(_Parser(_tokens(text)).parse())


# --- tokenizer (jsonata-python's Tokenizer.next, eagerly) ----------------------------------

_OPERATOR_CHARS = frozenset(".[]{}(),@#;:?+-*/%|=<>^&!~")
_DOUBLE_OPERATORS = ("..", ":=", "!=", ">=", "<=", "**", "~>", "?:", "??")
_WHITESPACE = " \t\n\r"
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_NUMBER = re.compile(r"(0|([1-9][0-9]*))(\.[0-9]+)?([Ee][-+]?[0-9]+)?")
_HEX4 = re.compile(r"[0-9a-fA-F]+")
_VALUES = {"true": True, "false": False, "null": _NULL}


class _Token:
    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value: Any) -> None:
        self.kind = kind  # op, name, var, str, num, value, end
        self.value = value

    def is_op(self, value: str) -> bool:
        return self.kind == "op" and self.value == value


def _tokens(text: str) -> list[_Token]:
    """All tokens. A ``/`` is always the division operator here: where the library would
    read a regex instead (an operand position), the parser refuses it."""
    tokens: list[_Token] = []
    position = 0
    while True:
        position = _skip_blank(text, position)
        if position >= len(text):
            tokens.append(_Token("end", None))
            return tokens
        token, position = _next_token(text, position)
        tokens.append(token)


def _skip_blank(text: str, position: int) -> int:
    while position < len(text):
        if text[position] in _WHITESPACE:
            position += 1
        elif text.startswith("/*", position):
            end = text.find("*/", position + 2)
            if end < 0:
                raise _NotCompilable("unterminated comment")
            position = end + 2
        else:
            break
    return position


def _next_token(text: str, position: int) -> tuple[_Token, int]:
    pair = text[position : position + 2]
    if pair in _DOUBLE_OPERATORS:
        return _Token("op", pair), position + 2
    char = text[position]
    if char in _OPERATOR_CHARS:
        return _Token("op", char), position + 1
    if char in "\"'":
        return _string_token(text, position)
    number = _NUMBER.match(text, position)
    if number is not None:
        value = float(number.group())
        if not math.isfinite(value):
            raise _NotCompilable("number out of range")
        return _Token("num", _convert_number(value)), number.end()
    if char == "`":
        end = text.find("`", position + 1)
        if end < 0:
            raise _NotCompilable("unterminated name")
        return _Token("name", text[position + 1 : end]), end + 1
    return _name_token(text, position)


def _string_token(text: str, position: int) -> tuple[_Token, int]:
    quote = text[position]
    position += 1
    parts = []
    while position < len(text):
        char = text[position]
        if char == quote:
            return _Token("str", "".join(parts)), position + 1
        if char == "\\":
            position += 1
            escape = text[position : position + 1]
            if escape in _ESCAPES:
                parts.append(_ESCAPES[escape])
            elif escape == "u" and _HEX4.fullmatch(text[position + 1 : position + 5]):
                parts.append(chr(int(text[position + 1 : position + 5], 16)))
                position += 4
            else:
                raise _NotCompilable("bad escape")
        else:
            parts.append(char)
        position += 1
    raise _NotCompilable("unterminated string")


def _name_token(text: str, position: int) -> tuple[_Token, int]:
    end = position
    while end < len(text) and text[end] not in _WHITESPACE and text[end] not in _OPERATOR_CHARS:
        end += 1
    name = text[position:end]
    if name.startswith("$"):
        return _Token("var", name[1:]), end
    if name in ("and", "or", "in"):
        return _Token("op", name), end
    if name in _VALUES:
        return _Token("value", _VALUES[name]), end
    return _Token("name", name), end


# --- parser (Pratt, as jsonata-python's Parser, for the subset) ----------------------------

# Left binding powers of the operators that may follow an operand (Tokenizer.operators).
_LBP = {
    ".": 75, "[": 80, "(": 80, "{": 70, "?": 20, "+": 50, "-": 50, "*": 60, "/": 60, "%": 60,
    "=": 40, "<": 40, ">": 40, "!=": 40, "<=": 40, ">=": 40, "&": 50, "and": 30, "or": 25,
    "in": 40, "~>": 40, "^": 40, "?:": 40, "??": 40, ":=": 10, "@": 80, "#": 80,
}  # fmt: skip
_BINARY = frozenset(
    ("+", "-", "*", "/", "%", "=", "<", ">", "!=", "<=", ">=", "&", "and", "or", "in")
)


class _Raw:
    """A parse-tree node before the library's ``process_ast`` step."""

    __slots__ = ("kind", "value", "items")

    def __init__(self, kind: str, value: Any = None, items: list[Any] | None = None) -> None:
        self.kind = kind
        self.value = value
        self.items = items or []


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.nesting = 0

    @property
    def node(self) -> _Token:
        return self.tokens[self.index]

    def advance(self, expected: str | None = None) -> _Token:
        token = self.node
        if expected is not None and not token.is_op(expected):
            raise _NotCompilable(f"expected {expected}")
        if token.kind != "end":
            self.index += 1
        return token

    def parse(self) -> _Raw:
        tree = self.expression(0)
        if self.node.kind != "end":
            raise _NotCompilable("trailing tokens")
        return tree

    def lbp(self) -> int:
        token = self.node
        return _LBP.get(token.value, 0) if token.kind == "op" else 0

    def expression(self, rbp: int) -> _Raw:
        self.nesting += 1
        if self.nesting > _MAX_NESTING:
            raise _NotCompilable("nested too deeply")
        left = self.nud(self.advance())
        while rbp < self.lbp():
            left = self.led(self.advance().value, left)
        self.nesting -= 1
        return left

    def nud(self, token: _Token) -> _Raw:
        if token.kind in ("str", "num", "value"):
            return _Raw(token.kind, token.value)
        if token.kind == "name":
            return _Raw("name", token.value)
        if token.kind == "var":
            # `$` is the context; `$name` only as a function to call (see led "(").
            return _Raw("context") if token.value == "" else _Raw("function_name", token.value)
        if token.kind == "op" and token.value in _PREFIX:
            return _PREFIX[token.value](self)
        raise _NotCompilable(f"unsupported {token.value!r}")

    def led(self, operator: str, left: _Raw) -> _Raw:
        if operator in _BINARY:
            return _Raw("binary", operator, [left, self.expression(_LBP[operator])])
        if operator == ".":
            return _Raw("binary", ".", [left, self.expression(75)])
        if operator == "[":
            if self.node.is_op("]"):
                raise _NotCompilable("[] (keep array)")
            predicate = self.expression(0)
            self.advance("]")
            return _Raw("binary", "[", [left, predicate])
        if operator == "(":
            return self.call(left)
        if operator == "?":
            then = self.expression(0)
            otherwise = None
            if self.node.is_op(":"):
                self.advance(":")
                otherwise = self.expression(0)
            return _Raw("condition", None, [left, then, otherwise])
        raise _NotCompilable(f"unsupported operator {operator}")

    def call(self, procedure: _Raw) -> _Raw:
        if procedure.kind != "function_name" or procedure.value not in _FUNCTIONS:
            raise _NotCompilable("only the built-in functions of the subset")
        arguments = self.sequence(")", ",")
        return _Raw("call", procedure.value, arguments)

    def sequence(self, closer: str, separator: str) -> list[_Raw]:
        items = []
        if not self.node.is_op(closer):
            while True:
                if self.node.is_op("?"):
                    raise _NotCompilable("partial application")
                items.append(self.expression(0))
                if not self.node.is_op(separator):
                    break
                self.advance(separator)
        self.advance(closer)
        return items

    def block(self) -> _Raw:
        expressions = []
        while not self.node.is_op(")"):
            expressions.append(self.expression(0))
            if not self.node.is_op(";"):
                break
            self.advance(";")
        self.advance(")")
        return _Raw("block", None, expressions)

    def array(self) -> _Raw:
        items = []
        if not self.node.is_op("]"):
            while True:
                items.append(self.expression(0))
                if self.node.is_op(".."):
                    raise _NotCompilable("range")
                if not self.node.is_op(","):
                    break
                self.advance(",")
        self.advance("]")
        return _Raw("array", None, items)

    def object(self) -> _Raw:
        pairs = []
        if not self.node.is_op("}"):
            while True:
                key = self.expression(0)
                self.advance(":")
                pairs.append((key, self.expression(0)))
                if not self.node.is_op(","):
                    break
                self.advance(",")
        self.advance("}")
        return _Raw("object", None, pairs)

    def negation(self) -> _Raw:
        return _Raw("negate", None, [self.expression(70)])


_PREFIX: dict[str, Callable[[_Parser], _Raw]] = {
    "(": _Parser.block,
    "[": _Parser.array,
    "{": _Parser.object,
    "-": _Parser.negation,
}


# --- processed tree (the library's process_ast, for the subset) ----------------------------


class _Node:
    """A processed node. ``predicate``: filters applied inside the node's own evaluation;
    ``stages``: filters applied by the path step that evaluates it (library semantics)."""

    __slots__ = ("kind", "value", "items", "predicate", "stages", "consarray")

    def __init__(self, kind: str, value: Any = None, items: list[Any] | None = None) -> None:
        self.kind = kind  # path, name, string, number, value, context, negate, array,
        self.value = value  # object, block, binary, condition, call
        self.items = items if items is not None else []
        self.predicate: list[_Node] = []
        self.stages: list[_Node] = []
        self.consarray = False


def _process(raw: _Raw) -> _Node:
    kind = raw.kind
    if kind == "binary":
        if raw.value == ".":
            return _process_path(raw)
        if raw.value == "[":
            return _process_predicate(raw)
        return _Node("binary", raw.value, [_process(raw.items[0]), _process(raw.items[1])])
    if kind == "name":
        return _Node("path", None, [_Node("name", raw.value)])
    if kind in ("str", "num", "value"):
        return _Node({"str": "string", "num": "number", "value": "value"}[kind], raw.value)
    if kind == "context":
        return _Node("context")
    if kind == "negate":
        return _process_negation(raw)
    if kind == "object":
        return _Node("object", None, [(_process(k), _process(v)) for k, v in raw.items])
    if kind == "block":
        return _process_block(raw)
    if kind in ("array", "call"):
        return _Node(kind, raw.value, [_process(item) for item in raw.items])
    if kind == "condition":
        return _Node("condition", None, [_process(i) if i else None for i in raw.items])
    raise _NotCompilable(f"unsupported {kind}")  # function_name outside a call


def _process_path(raw: _Raw) -> _Node:
    first = _process(raw.items[0])
    path = first if first.kind == "path" else _Node("path", None, [first])
    rest = _process(raw.items[1])
    if rest.kind == "path":
        path.items.extend(rest.items)
    else:
        if rest.predicate:
            rest.stages, rest.predicate = rest.predicate, []
        path.items.append(rest)
    for step in path.items:
        if step.kind in ("number", "value"):
            raise _NotCompilable("literal step (S0213)")
        if step.kind == "string":
            step.kind = "name"
    if path.items[0].kind == "array":
        path.items[0].consarray = True
    if path.items[-1].kind == "array":
        path.items[-1].consarray = True
    return path


def _process_predicate(raw: _Raw) -> _Node:
    result = _process(raw.items[0])
    predicate = _process(raw.items[1])
    if result.kind == "path":
        result.items[-1].stages.append(predicate)
    else:
        result.predicate.append(predicate)
    return result


def _process_negation(raw: _Raw) -> _Node:
    operand = _process(raw.items[0])
    if operand.kind == "number":  # folded by the parser, which matters for a[-1]
        operand.value = _convert_number(-float(operand.value))
        return operand
    return _Node("negate", None, [operand])


def _process_block(raw: _Raw) -> _Node:
    block = _Node("block", None, [_process(item) for item in raw.items])
    block.consarray = any(
        part.consarray or (part.kind == "path" and part.items[0].consarray) for part in block.items
    )
    return block
