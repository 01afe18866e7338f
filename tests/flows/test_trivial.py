"""flows.trivial answers only what JSONata would answer, and leaves the rest to JSONata."""

from __future__ import annotations

import pytest

from flows import mapping, trivial
from flows.sandbox import SandboxedEvaluator

DATA = {
    "order_number": 1001,
    "big": 10**22,
    "name": "Zoë",
    "price": 1.5,
    "paid": True,
    "nothing": None,
    "financial_status": "paid",
    "customer": {"email": "a@b.test", "id": 7, "tags": ["x"]},
    "line_items": [{"sku": "A"}, {"sku": "B"}],
}

EXPRESSIONS = [
    "order_number",
    "$string(order_number)",
    " $string( customer.email ) ",
    "customer.id",
    "customer.missing",
    "$string(missing.deeper)",
    "name",
    "$string(name)",
    # Left to JSONata: the answer depends on its number formatting or sequence rules.
    "big",
    "$string(big)",
    "price",
    "$string(price)",
    "paid",
    "$string(paid)",
    "nothing",
    "$string(nothing)",
    "customer",
    "customer.tags",
    "line_items.sku",
    "true",
    "$string(order_number) & 'x'",
    "order_number + 1",
]

CONDITIONS = [
    "financial_status = 'paid'",
    'financial_status = "paid"',
    "financial_status = 'refunded'",
    "missing = 'paid'",
    "order_number = '1001'",
    "paid = 'true'",
    "nothing = 'null'",
    "customer.email = 'a@b.test'",
    # Left to JSONata.
    "customer = 'x'",
    "line_items.sku = 'A'",
    "financial_status = 'pa\\'id'",
    "financial_status != 'paid'",
    "financial_status = 'paid' and true",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_a_path_is_answered_as_jsonata_would_or_not_at_all(expression):
    known = trivial.evaluate(expression, DATA)
    if known is trivial.UNKNOWN:
        return
    assert known == mapping.evaluate(expression, DATA)
    assert type(known) is type(mapping.evaluate(expression, DATA))


@pytest.mark.parametrize("expression", CONDITIONS)
def test_a_comparison_is_answered_as_jsonata_would_or_not_at_all(expression):
    known = trivial.evaluate_condition(expression, DATA)
    if known is trivial.UNKNOWN:
        return
    assert known == mapping.evaluate_condition(expression, DATA)


def test_the_usual_business_key_and_filter_are_answered_without_jsonata():
    assert trivial.evaluate("$string(order_number)", DATA) == "1001"
    assert trivial.evaluate_condition("financial_status = 'paid'", DATA) is True
    for unknown in ("$string(price)", "line_items.sku", "big", "true"):
        assert trivial.evaluate(unknown, DATA) is trivial.UNKNOWN
    assert trivial.evaluate_condition("line_items.sku = 'A'", DATA) is trivial.UNKNOWN
    assert trivial.evaluate("order_number", [DATA]) is trivial.UNKNOWN  # an array input


def test_the_sandbox_answers_trivial_expressions_without_a_child():
    with SandboxedEvaluator(pool_size=1) as evaluator:
        calls: list[object] = []
        real_call = evaluator._call
        evaluator._call = lambda request: calls.append(request) or real_call(request)
        assert evaluator.evaluate("$string(order_number)", DATA) == "1001"
        assert evaluator.evaluate_condition("financial_status = 'paid'", DATA) is True
        assert calls == []
        # Everything else still goes to the child, with the same answer as JSONata.
        expected = mapping.evaluate("$string(price)", DATA)
        assert evaluator.evaluate("$string(price)", DATA) == expected
        assert len(calls) == 1
