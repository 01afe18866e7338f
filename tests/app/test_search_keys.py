"""Runs are found by business key, and by the order numbers, SKUs and e-mails they carry."""

from __future__ import annotations

from app.services.search_keys import MAX_KEYS_PER_RUN, extract
from tests.app.test_execution import post_order
from tests.app.test_walking_skeleton import ORDER, live_flow


def test_extract_finds_identifiers_anywhere_in_the_message():
    payload = {
        "orderNumber": "A-1",
        "customer": {"Email": " Jane.Doe@Example.COM ", "name": "Jane"},
        "line_items": [{"sku": "SKU-1", "qty": 2}, {"sku": "SKU-2"}, {"sku": "SKU-1"}],
        "shipping": {"tracking": "X"},
        "flag": {"sku": True},
    }
    assert extract(payload, "1001") == ["1001", "A-1", "jane.doe@example.com", "SKU-1", "SKU-2"]
    many = {"items": [{"sku": f"S{i}"} for i in range(500)]}
    assert len(extract(many)) == MAX_KEYS_PER_RUN
    assert extract("not an object") == [] and extract({"sku": ""}) == []


def _reference(payload, business_key=None):
    """The rule, written as a plain recursive walk: named str/int fields whose name is a key
    field, in document order, at most MAX_DEPTH levels down, distinct, capped."""
    from app.services.search_keys import MAX_DEPTH, _is_key_field, normalise

    found = [normalise(business_key)[:255]] if business_key else []

    def walk(name, value, depth):
        if isinstance(value, dict):
            if depth <= MAX_DEPTH:
                for key, item in value.items():
                    walk(key, item, depth + 1)
        elif isinstance(value, list):
            if depth <= MAX_DEPTH:
                for item in value:
                    walk(None, item, depth + 1)
        elif name is not None and isinstance(value, (str, int)) and not isinstance(value, bool):
            text = normalise(str(value))[:255]
            if text and _is_key_field(str(name)) and text not in found:
                found.append(text)

    walk(None, payload, 0)
    return found[:MAX_KEYS_PER_RUN]


def test_extract_agrees_with_a_plain_recursive_walk_subclasses_included():
    import collections
    import enum
    import random

    class Code(str):
        pass

    class Number(enum.IntEnum):
        FIVE = 5

    rng = random.Random(8)
    names = ["sku", "SKU", "email", "order_number", "orderId", "title", "qty", "line-sku", "x"]
    leaves = ["A-1", " Jane@EXAMPLE.com ", "", 7, 2.5, True, None, "x" * 300, Code("c-1")]

    def document(level):
        roll = rng.random()
        if level > 4 or roll < 0.35:
            return rng.choice([*leaves, Number.FIVE])
        if roll < 0.6:
            return [document(level + 1) for _ in range(rng.randint(0, 3))]
        fields = {f"{rng.choice(names)}{i % 2 or ''}": document(level + 1) for i in range(4)}
        return collections.OrderedDict(fields) if rng.random() < 0.2 else fields

    for _ in range(3000):
        value, key = document(0), rng.choice([None, "BK-1"])
        assert extract(value, key) == _reference(value, key), value
    deep: dict = {}
    level = deep
    for depth in range(12):  # past MAX_DEPTH: the deepest SKUs are not walked
        level["sku"], level["next"], level["items"] = f"S{depth}", {}, [{"sku": f"L{depth}"}]
        level = level["next"]
    assert extract(deep) == _reference(deep) and "S3" in extract(deep)
    assert "S11" not in extract(deep)


def test_search_by_order_number_sku_and_email(client, make_user, sink):
    ctx = live_flow(client, make_user, sink)
    h = ctx["headers"]
    first = post_order(client, ctx, dict(ORDER, order_number=5001))
    other = dict(ORDER, order_number=5002, email="someone.else@example.com")
    other["customer"] = dict(ORDER["customer"], email="someone.else@example.com")
    other["line_items"] = [dict(ORDER["line_items"][0], sku="ONLY-IN-5002")]
    second = post_order(client, ctx, other)

    def found(q: str) -> list[int]:
        r = client.get("/api/v1/runs", query_string={"q": q}, headers=h)
        assert r.status_code == 200, r.get_json()
        return [item["id"] for item in r.get_json()["items"]]

    assert found("5001") == [first]  # the business key
    assert found("ONLY-IN-5002") == [second]  # a SKU of the payload
    assert found(ORDER["line_items"][0]["sku"]) == [first]
    assert found("SOMEONE.ELSE@example.com") == [second]  # e-mails ignore case
    assert found(ORDER["email"].upper()) == [first]
    assert found("nothing-like-this") == []
