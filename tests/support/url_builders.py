"""Reuse werkzeug's compiled URL builders across the many apps a test session creates.

Every test gets its own app (``create_app``), and werkzeug compiles each URL rule's
builder function from a generated AST (``Rule._compile_builder``: ``ast`` walks and
``compile``) on every app: about 60 % of ``create_app``'s time, 20–35 ms per test for ~90
rules, a minute or more over the suite. The generated function depends only on the rule's
parsed parts (``_trace``) and on ``append_unknown``; it reads the converters through its
``self`` argument at call time, so the same function serves every app's copy of a rule.
Rules with defaults (whose values are converted into the code) are compiled as before.
Tests only: a production process builds its one app once.
"""

from __future__ import annotations

from typing import Any

from werkzeug.routing import rules

_ORIGINAL = rules.Rule._compile_builder
_BUILDERS: dict[tuple[Any, ...], Any] = {}


def _cached_builder(self: rules.Rule, append_unknown: bool = True) -> Any:
    if self.defaults:
        return _ORIGINAL(self, append_unknown)
    key = (self.rule, tuple(self._trace), append_unknown)
    builder = _BUILDERS.get(key)
    if builder is None:
        builder = _BUILDERS[key] = _ORIGINAL(self, append_unknown)
    return builder


def reuse_url_builders() -> None:
    rules.Rule._compile_builder = _cached_builder  # type: ignore[method-assign]
