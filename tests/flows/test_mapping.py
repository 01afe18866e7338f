"""flows.mapping: JSONata evaluation with typed errors, limits, caching and thread safety."""

from __future__ import annotations

import copy
import datetime
import json
import os
import pickle
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flows import mapping
from flows.mapping import Limits, MappingError, check_expression, evaluate, evaluate_condition

REPO = Path(__file__).resolve().parents[2]

# Trimmed from shared/fixtures/retail/commerce-order-created.json.
ORDER = {
    "id": 5500000001,
    "name": "#1001",
    "order_number": 1001,
    "created_at": "2026-11-20T09:15:01+00:00",
    "currency": "GBP",
    "financial_status": "paid",
    "fulfillment_status": None,
    "customer": {"id": 7700001, "first_name": "Zoë", "last_name": "O'Brien-Ñúñez"},
    "line_items": [
        {"id": 1100000100, "sku": "TSH-ORG-BLK-M", "quantity": 1, "price": "24.00"},
        {"id": 1100000101, "sku": "TSH-ORG-WHT-L", "quantity": 2, "price": "24.00"},
        {"id": 1100000102, "sku": "JNS-SLM-IND-32", "quantity": 3, "price": "79.50"},
    ],
    "note_attributes": [{"name": "gift_message", "value": "Happy birthday 🎂"}],
    "tags": "web,uk",
}

OMS_MAPPING = (
    "{ 'orderRef': 'WEB-' & $string(order_number),"
    " 'lines': line_items.{ 'sku': sku, 'qty': quantity } }"
)

INFINITE_LOOP = "($f := function(){ $f() }; $f())"
RECURSE_N = "($f := function($n){ $n = 0 ? 0 : 1 + $f($n - 1) }; $f(n))"


def _code(expression: str, data: object = None, **kwargs: object) -> str:
    with pytest.raises(MappingError) as info:
        evaluate(expression, data, **kwargs)
    return info.value.code


# --- results -----------------------------------------------------------------------


def test_order_to_oms_mapping() -> None:
    result = evaluate(OMS_MAPPING, ORDER)
    assert result == {
        "orderRef": "WEB-1001",
        "lines": [
            {"sku": "TSH-ORG-BLK-M", "qty": 1},
            {"sku": "TSH-ORG-WHT-L", "qty": 2},
            {"sku": "JNS-SLM-IND-32", "qty": 3},
        ],
    }
    assert list(result) == ["orderRef", "lines"]
    assert list(result["lines"][0]) == ["sku", "qty"]


def test_output_is_fresh_plain_python_and_input_is_untouched() -> None:
    before = copy.deepcopy(ORDER)
    whole = evaluate("$", ORDER)
    assert whole == ORDER and whole is not ORDER
    assert type(whole["line_items"]) is list
    whole["line_items"].clear()  # the caller owns the output
    for expression in (
        "$sort(line_items, function($a, $b){ $a.quantity < $b.quantity })",
        "$reverse(line_items)",
        "$merge([customer, {'vip': true}])",
        "$ ~> |line_items|{'quantity': quantity * 10}|",
    ):
        evaluate(expression, ORDER)
    assert ORDER == before
    assert json.loads(json.dumps(evaluate(OMS_MAPPING, ORDER))) == evaluate(OMS_MAPPING, ORDER)


def test_undefined_and_null_both_become_none() -> None:
    assert evaluate("no_such_field", ORDER) is None
    assert evaluate("fulfillment_status", ORDER) is None
    assert evaluate("$exists(fulfillment_status)", ORDER) is True
    assert evaluate("{'a': no_such_field, 'b': null}", ORDER) == {"b": None}
    assert evaluate("$count($)", ORDER["line_items"]) == 3
    assert evaluate("42", None) == 42


def test_bindings_become_variables() -> None:
    total = "$sum(line_items.(quantity * $number(price))) * (1 + $vat)"
    assert evaluate(total, ORDER, bindings={"vat": 0.2}) == pytest.approx(372.6)
    assert evaluate("$channel & '-' & order_number", ORDER, bindings={"channel": "WEB"}) == (
        "WEB-1001"
    )


# --- numbers: 16+ digit ids ----------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("$string(1234567890123456)", "1234567890123456"),
        ('"ID-" & 1234567890123456', "ID-1234567890123456"),
        ("'ID-' & id", "ID-5500000001"),
        ("$string(long_id)", "1234567890123456"),
        ("'LI-' & long_id", "LI-1234567890123456"),
        ("$string(snowflake)", "1234567890123456789"),  # beyond 2**53: from data, all digits
        ("$string(1.5)", "1.5"),
        ("$string(0.1+0.2)", "0.3"),
        ("$string(22/7)", "3.14285714285714"),
        ("$string(1e300)", "1e+300"),
        ("$string(1e20)", "100000000000000000000"),
        ("$string(1e21)", "1e+21"),
        ("$string(1e-6)", "0.000001"),
        ("$string(1e-7)", "1e-7"),
        ("$string(-2.5)", "-2.5"),
        ("$string(price_float)", "79.5"),
        ("$string({'id': long_id, 'tax': 0.1+0.2})", '{"id":1234567890123456,"tax":0.3}'),
        ("$string([1..3])", "[1,2,3]"),
        ("$string({'name': 'Zoë 🎂'})", '{"name":"Zoë 🎂"}'),  # not \\u-escaped
        ("$string({'a': [1]}, true)", '{\n  "a": [\n    1\n  ]\n}'),
        ("$string($sum)", ""),
    ],
)
def test_string_formats_numbers_like_the_reference(expression: str, expected: str) -> None:
    data = {
        "id": 5500000001,
        "long_id": 1234567890123456,
        "snowflake": 1234567890123456789,
        "price_float": 79.5,
    }
    assert evaluate(expression, data) == expected


def test_numbers_in_the_output_stay_numbers() -> None:
    data = {"id": 1234567890123456789, "qty": 2, "price": 79.5}
    assert evaluate("{'id': id, 'qty': qty, 'price': price}", data) == data
    assert type(evaluate("qty * 2", data)) is int


# --- errors ------------------------------------------------------------------------


def test_syntax_error_has_code_and_position() -> None:
    error = check_expression("$sum(")
    assert error is not None
    assert (error.code, error.position) == ("S0203", 5)
    assert error.to_dict() == {
        "code": "S0203",
        "position": 5,
        "message": "Expected ) before end of expression",
    }
    with pytest.raises(MappingError) as info:
        evaluate("$sum(", ORDER)
    assert info.value.to_dict() == error.to_dict()
    assert str(info.value) == "S0203 at position 5: Expected ) before end of expression"


def test_check_expression_accepts_valid_and_runtime_failing_expressions() -> None:
    assert check_expression(OMS_MAPPING) is None
    assert check_expression("1 + 'a'") is None  # a type error, found only when evaluated
    assert check_expression("") is not None
    not_text = check_expression(42)  # type: ignore[arg-type]
    assert not_text is not None and not_text.code == "F0001"


@pytest.mark.parametrize(
    ("expression", "code"),
    [
        ("1 + 'a'", "T2002"),  # JException
        ("($f := 5; $f())", "T1006"),  # JException after a debug print
        ("$number('abc')", "F0001"),  # ValueError
        ("$toMillis('foo')", "F0001"),  # ValueError
        ("$sort([{'a': 1}, {'a': 2}])", "F0001"),  # TypeError
        ("[1!2]", "F0001"),  # KeyError (the reference says S0204)
        ("1/0", "D1001"),  # ZeroDivisionError
        ("$power(10, 400)", "D1001"),  # OverflowError
        ("$string(1/0)", "D1001"),
        ("line_items[0].sku.foo.bar ~> $uppercase", None),  # fine: undefined
    ],
)
def test_every_library_failure_becomes_mapping_error(expression: str, code: str | None) -> None:
    if code is None:
        assert evaluate(expression, ORDER) is None
        return
    assert _code(expression, ORDER) == code


@pytest.mark.parametrize(
    ("expression", "outcome"),
    [
        ("'WEB-' & $string(order_number) /* OMS wants a prefix */", "WEB-1001"),
        ("/* gross */ $sum(line_items.quantity) /* units */ /* twice */", 6),
        ("order_number /* unclosed", "S0106"),
        ("/* nothing but a comment */", "S0207"),
    ],
)
def test_comments_at_the_end_work(expression: str, outcome: object) -> None:
    # jsonata-python's tokenizer runs off the end after a final comment (IndexError).
    if isinstance(outcome, str) and re.fullmatch(r"S\d{4}", outcome):
        assert _code(expression, ORDER) == outcome
    else:
        assert evaluate(expression, ORDER) == outcome


def test_messages_are_readable() -> None:
    with pytest.raises(MappingError) as info:
        evaluate("$pad('x')", ORDER)
    assert info.value.message == "Argument 2 of function pad does not match function signature"
    assert info.value.position == 5
    with pytest.raises(MappingError) as info:
        evaluate("{ customer: 1 }", ORDER)  # a key that is an object: T1003 quotes it
    message = info.value.message
    assert info.value.code == "T1003"
    assert '{"id":7700001,"first_name":"Zoë"' in message  # JSON, not Python repr
    assert "{'" not in message and "None" not in message
    assert len(message) < 150  # data in messages is clipped


def test_library_debug_prints_do_not_reach_stdout(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="flows.mapping")
    assert _code("($f := 5; $f())", ORDER) == "T1006"
    assert capfd.readouterr().out == ""
    assert any("Proc not found" in r.getMessage() for r in caplog.records)


def test_mapping_error_pickles() -> None:
    error = MappingError("S0203", "Expected ) before end of expression", 5)
    clone = pickle.loads(pickle.dumps(error))
    assert clone.to_dict() == error.to_dict()


# --- input and output checks -------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"created_at": datetime.datetime(2026, 11, 20)},
        {"price": float("nan")},
        {"lines": (1, 2)},
        {1: "not a string key"},
    ],
)
def test_input_must_be_plain_json(data: object) -> None:
    assert _code("$", data) == "F0001"


def test_bindings_must_be_plain_json() -> None:
    assert _code("$x", None, bindings={"x": object()}) == "F0001"
    assert _code("$x", None, bindings={1: "x"}) == "F0001"  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "expression", ["function($x){ $x }", "$sum", "/TSH-.*/", "{'f': $uppercase}", "[1, $sum]"]
)
def test_functions_in_the_result_are_not_json(expression: str) -> None:
    assert _code(expression, ORDER) == "F0003"


def test_output_size_is_bounded_in_utf8_bytes() -> None:
    limits = Limits(max_output_bytes=100)
    assert evaluate("$s", None, bindings={"s": "x" * 98}, limits=limits) == "x" * 98  # "…" = 100
    assert _code("$s", None, bindings={"s": "x" * 99}, limits=limits) == "F0002"
    assert evaluate("$s", None, bindings={"s": "é" * 49}, limits=limits) == "é" * 49
    assert _code("$s", None, bindings={"s": "é" * 50}, limits=limits) == "F0002"


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        Limits(timeout_ms=0)
    with pytest.raises(ValueError):
        Limits(max_depth=True)


# --- limits ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "codes"),
    [
        (INFINITE_LOOP, {"D1012"}),
        ("($f := function($n){ 1 + $f($n + 1) }; $f(0))", {"D1011"}),
        ("[1..10000001]", {"D2014"}),
        ("[1..10000000]", {"F0002", "D1012"}),  # within the range cap, too big to return
        ("[1..10000000].($ * 2)", {"D1012"}),
    ],
)
def test_runaway_expressions_stop_within_two_seconds(expression: str, codes: set[str]) -> None:
    # CPU time says the evaluator gave up; wall time is looser because the machine may be
    # busy (the timeout is 1 s of wall time under the default Limits).
    wall, cpu = time.monotonic(), time.process_time()
    assert _code(expression, None) in codes
    assert time.process_time() - cpu < 2
    assert time.monotonic() - wall < 5


def test_timeout_clock_restarts_for_every_evaluation() -> None:
    # The library starts the clock when the expression is built: a cached expression would
    # time out on every evaluation once it is older than the timeout.
    limits = Limits(timeout_ms=200)
    expression = "'WEB-' & $string(order_number) /* timeout clock */"
    assert evaluate(expression, ORDER, limits=limits) == "WEB-1001"
    time.sleep(0.3)
    assert evaluate(expression, ORDER, limits=limits) == "WEB-1001"
    assert _code(INFINITE_LOOP, None, limits=limits) == "D1012"  # and still applies


def test_depth_count_restarts_after_a_depth_abort() -> None:
    # The library leaves the depth of an aborted evaluation on the compiled object.
    limits = Limits(max_depth=100)
    assert _code(RECURSE_N, {"n": 1000}, limits=limits) == "D1011"
    assert evaluate(RECURSE_N, {"n": 3}, limits=limits) == 3


def test_depth_does_not_creep_with_the_data() -> None:
    # The library's depth count drifts up by one per lambda call that builds an object or
    # array of two or more entries: this exceeded depth 200 on a 250-line order.
    order = {"line_items": [{"sku": f"SKU-{i}", "quantity": i % 5 + 1} for i in range(250)]}
    lines = evaluate("$map(line_items, function($l){ {'sku': $l.sku, 'qty': $l.quantity} })", order)
    assert len(lines) == 250 and lines[-1] == {"sku": "SKU-249", "qty": 5}
    pairs = evaluate("$map(line_items, function($l){ [$l.sku, $l.quantity] })", order)
    assert pairs[0] == ["SKU-0", 1]


@pytest.mark.parametrize(
    ("expression", "code"),
    [
        (f"($__evaluate_entry := nothing; $__evaluate_exit := nothing; {INFINITE_LOOP})", "F0005"),
        (f"(function($__evaluate_entry){{ {INFINITE_LOOP} }})()", "F0005"),
        (f"$eval('($__evalu' & 'ate_entry := nothing; ' & '{INFINITE_LOOP}' & ')')", "D3120"),
    ],
)
def test_expressions_cannot_switch_off_their_limits(expression: str, code: str) -> None:
    # The evaluator calls whatever $__evaluate_entry / $__evaluate_exit are bound to:
    # shadowing them with undefined would let this loop run forever.
    started = time.monotonic()
    assert _code(expression, None, limits=Limits(timeout_ms=300)) == code
    assert time.monotonic() - started < 1


def test_long_or_deeply_nested_expressions_fail_cleanly() -> None:
    nested = "(" * 5000 + "1" + ")" * 5000  # 10,001 characters: under the default limit
    errors: list[MappingError] = []

    def run() -> None:  # in a thread too: a smaller stack must not crash the process
        with pytest.raises(MappingError) as info:
            evaluate(nested, None)
        errors.append(info.value)

    run()
    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert [e.code for e in errors] == ["D1011", "D1011"]
    assert _code(nested, None, limits=Limits(max_expression_chars=10_000)) == "F0004"
    too_long = check_expression("1 + " * 6000 + "1")
    assert too_long is not None and too_long.code == "F0004"
    assert evaluate("(" * 50 + "1" + ")" * 50, None) == 1


# --- conditions --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("financial_status = 'paid'", True),
        ("financial_status = 'refunded'", False),
        ("no_such_field", False),
        ("fulfillment_status", False),
        ("line_items[quantity > 2]", True),
        ("line_items[quantity > 5]", False),
        ("$count(line_items) > 2 and currency = 'GBP'", True),
        ("tags", True),
        ("customer.tags", False),
        ("0", False),
        ("[0, 0]", False),
        ("[0, 1]", True),
        ("function(){ true }", False),
    ],
)
def test_evaluate_condition_uses_boolean_semantics(condition: str, expected: bool) -> None:
    assert evaluate_condition(condition, ORDER) is expected


def test_evaluate_condition_raises_mapping_errors() -> None:
    with pytest.raises(MappingError) as info:
        evaluate_condition(INFINITE_LOOP, ORDER, limits=Limits(timeout_ms=100))
    assert info.value.code == "D1012"


# --- caching and threads -----------------------------------------------------------


def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mapping, "CACHE_SIZE", 3)
    for i in range(6):
        assert evaluate(f"{i} + 1 /* cache bound */", None) == i + 1
    assert len(mapping._cache) <= 3


def test_same_expression_in_many_threads() -> None:
    expression = "{'ref': 'WEB-' & $string(order_number), 'units': $sum(line_items.quantity)}"
    barrier = threading.Barrier(16)
    results: dict[int, list[object]] = {}

    def worker(n: int) -> None:
        order = copy.deepcopy(ORDER)
        order["order_number"] = n
        order["line_items"][0]["quantity"] = n
        barrier.wait()
        results[n] = [evaluate(expression, order) for _ in range(25)]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n in range(16):
        assert results[n] == [{"ref": f"WEB-{n}", "units": n + 5}] * 25


def test_busy_cached_expression_does_not_block() -> None:
    expression = "'WEB-' & $string(order_number) /* busy */"
    check_expression(expression)  # cache it
    entry = mapping._cache[expression]
    with entry.lock:  # as if another thread were evaluating it
        assert evaluate(expression, ORDER) == "WEB-1001"


def test_now_is_the_evaluation_time_in_any_thread() -> None:
    # $now()/$millis() read the thread's "current" library instance, which the library
    # only sets when an expression is built: with a cache it would be stale.
    expression = "$millis() /* now */"
    check_expression(expression)
    check_expression("1 /* another expression, built later */")
    time.sleep(0.25)
    seen: list[float] = []

    def read() -> None:
        seen.append(evaluate(expression, None) - time.time() * 1000)

    read()
    worker = threading.Thread(target=read)
    worker.start()
    worker.join()
    assert all(abs(drift) < 100 for drift in seen), seen


def test_import_has_no_side_effects() -> None:
    probe = (
        "import sys; limit = sys.getrecursionlimit(); import flows.mapping; "
        "print(sorted({'jsonata', 'flask', 'sqlalchemy', 'app'} & set(sys.modules)), "
        "sys.getrecursionlimit() == limit)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=REPO, check=True
    ).stdout
    assert out.strip() == "[] True"
