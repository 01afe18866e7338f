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
