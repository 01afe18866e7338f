"""The official JSONata test suite, run through Flowgate's own ``flows.mapping.evaluate``.

One test per group (102), each listing its failing cases by name. Cases that jsonata-python
0.7.1 gets wrong are listed in ``jsonata_known_failures.txt``; every other case must pass, a
listed case that starts passing must be removed from the list (so it stays exact), and no
case may raise anything but ``MappingError``.

The suite (MIT, from jsonata-js 2.2.2) lives in ``shared/conformance/jsonata-test-suite``
beside the repository; ``JSONATA_TEST_SUITE`` points elsewhere.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest

from flows.mapping import Limits, MappingError, evaluate

pytestmark = pytest.mark.slow  # about 17 s of CPU, spread over two processes

REPO = Path(__file__).resolve().parents[2]
SUITE = Path(
    os.environ.get("JSONATA_TEST_SUITE", REPO.parent / "shared/conformance/jsonata-test-suite")
)
KNOWN_FAILURES_FILE = Path(__file__).with_name("jsonata_known_failures.txt")

# Cases without their own bounds get more room than production's Limits(): a few are
# deliberately heavy (flattening/large builds 200,000 strings), and a limit hit there would
# say nothing about conformance. The cases that test the limits bring their own.
DEFAULT_TIMEOUT_MS = 30_000
DEFAULT_DEPTH = 1_000


def _groups() -> list[str]:
    if not (SUITE / "groups").is_dir():
        return []
    return sorted(p.name for p in (SUITE / "groups").iterdir() if p.is_dir())


def _known_failures() -> set[str]:
    lines = KNOWN_FAILURES_FILE.read_text(encoding="utf-8").splitlines()
    return {line.split("#")[0].strip() for line in lines} - {""}


def _cases(group: str) -> list[tuple[str, dict[str, Any], Path]]:
    """(case id, case, its file) for a group; a file holding a list gives ``name[i]`` ids."""
    cases = []
    for path in sorted((SUITE / "groups" / group).glob("*.json")):
        content = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(content, list):
            for i, case in enumerate(content):
                cases.append((f"{group}/{path.stem}[{i}]", case, path))
        else:
            cases.append((f"{group}/{path.stem}", content, path))
    return cases


@functools.cache
def _dataset(name: str) -> Any:
    return json.loads((SUITE / "datasets" / f"{name}.json").read_text(encoding="utf-8"))


def _same(actual: Any, expected: Any, unordered: bool = False) -> bool:
    """Deep equality that, unlike ==, tells true from 1 (JSON numbers: 1 equals 1.0)."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(expected, (int, float)):
        return isinstance(actual, (int, float)) and actual == expected
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return False
        if unordered:
            remaining = list(actual)
            for item in expected:
                match = next((i for i, a in enumerate(remaining) if _same(a, item)), None)
                if match is None:
                    return False
                remaining.pop(match)
            return True
        return all(_same(a, e) for a, e in zip(actual, expected, strict=True))
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and actual.keys() == expected.keys()
            and all(_same(actual[k], expected[k]) for k in expected)
        )
    return type(actual) is type(expected) and actual == expected


class _Unexpected(Exception):
    """A case raised something other than MappingError: never acceptable."""


def _run_case(case: dict[str, Any], path: Path) -> str | None:
    """None if the case passes, else a short reason."""
    expr = case.get("expr")
    if expr is None:
        expr = (path.parent / case["expr-file"]).read_text(encoding="utf-8")
    if "data" in case:
        data = case["data"]  # null: our API reads None as "no input", close enough here
    elif case.get("dataset"):
        data = _dataset(case["dataset"])
    else:
        data = None
    code = case.get("code") or (case.get("error") or {}).get("code")
    # A time limit on a case that expects a result only says the reference is fast enough;
    # here it would make the case fail on a busy machine. Cases expecting D1012 keep theirs.
    timelimit = case.get("timelimit") if code else None
    limits = Limits(
        timeout_ms=timelimit or DEFAULT_TIMEOUT_MS, max_depth=case.get("depth") or DEFAULT_DEPTH
    )
    try:
        result = evaluate(expr, data, bindings=case.get("bindings") or None, limits=limits)
    except MappingError as error:
        if code is None:
            return f"raised {error.code}: {error.message}"
        return None if error.code == code else f"raised {error.code}, expected {code}"
    except Exception as exc:
        raise _Unexpected(f"{type(exc).__name__}: {exc}") from exc
    if code is not None:
        return f"returned {_short(result)}, expected error {code}"
    if case.get("undefinedResult"):
        return None if result is None else f"returned {_short(result)}, expected undefined"
    if _same(result, case.get("result"), bool(case.get("unordered"))):
        return None
    return f"returned {_short(result)}, expected {_short(case.get('result'))}"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:79] + "…"


def _run_group(group: str) -> dict[str, str | None]:
    """case id -> None (passed) or the reason it failed."""
    outcome: dict[str, str | None] = {}
    for case_id, case, path in _cases(group):
        try:
            outcome[case_id] = _run_case(case, path)
        except _Unexpected as exc:
            outcome[case_id] = f"UNEXPECTED EXCEPTION {exc}"
    return outcome


# The library is slow and CPU-bound: the groups run on two processes, the heaviest (about
# 10 s and 6 s of CPU) first so that both finish together.
HEAVY_GROUPS = ("flattening", "performance")
_outcomes: dict[str, dict[str, str | None]] = {}


def _outcomes_for(groups: list[str]) -> dict[str, dict[str, str | None]]:
    missing = sorted(set(groups) - _outcomes.keys(), key=lambda g: (g not in HEAVY_GROUPS, g))
    if len(missing) > 1:
        try:
            # spawn, not fork: a thread of another test could hold a lock at fork time.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
                _outcomes.update(zip(missing, pool.map(_run_group, missing), strict=True))
        except (OSError, BrokenProcessPool):
            pass  # no process pool on this machine: run them here
    for group in missing:
        if group not in _outcomes:
            _outcomes[group] = _run_group(group)
    return {group: _outcomes[group] for group in groups}


@pytest.fixture(scope="module")
def selected_groups(request: pytest.FixtureRequest) -> list[str]:
    """The groups this session tests, so that `-k fields` does not run the whole suite."""
    return [
        item.callspec.params["group"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    ]


def _require_suite() -> None:
    if not (SUITE / "groups").is_dir():
        pytest.skip(f"JSONata test suite not found at {SUITE} (set JSONATA_TEST_SUITE)")


@pytest.mark.parametrize("group", _groups() or ["(suite missing)"])
def test_group(group: str, selected_groups: list[str]) -> None:
    _require_suite()
    known = _known_failures()
    outcome = _outcomes_for(selected_groups)[group]
    unexpected = [f"{c}: {r}" for c, r in outcome.items() if r and r.startswith("UNEXPECTED")]
    regressions = [f"{c}: {r}" for c, r in outcome.items() if r and c not in known]
    fixed = [c for c, r in outcome.items() if r is None and c in known]
    assert not unexpected, "non-MappingError exceptions:\n" + "\n".join(unexpected)
    assert not regressions, "failing cases:\n" + "\n".join(regressions)
    assert not fixed, "now passing, remove from jsonata_known_failures.txt:\n" + "\n".join(fixed)


def test_known_failures_name_real_cases() -> None:
    _require_suite()
    all_ids = {case_id for group in _groups() for case_id, _, _ in _cases(group)}
    assert not _known_failures() - all_ids


def test_overall_pass_count() -> None:
    """The floor: exactly the known failures fail (prints the figures with -s)."""
    _require_suite()
    outcomes = {c: r for group in _outcomes_for(_groups()).values() for c, r in group.items()}
    passed = sum(r is None for r in outcomes.values())
    print(f"\nJSONata conformance: {passed:,} of {len(outcomes):,} cases pass", end=" ")
    print(f"({100 * passed / len(outcomes):.1f} %)")
    assert len(outcomes) >= 1_686
    assert passed == len(outcomes) - len(_known_failures() & outcomes.keys())
