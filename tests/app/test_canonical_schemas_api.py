"""The canonical retail schemas over the API: list, one by name (and version), 404."""

from __future__ import annotations


def test_list_and_get_canonical_schemas(client, make_user):
    _, headers = make_user("analyst")
    listed = client.get("/api/v1/schemas", headers=headers)
    assert listed.status_code == 200
    items = {(i["name"], i["version"]): i for i in listed.get_json()["items"]}
    assert set(items) == {
        ("order", 1),
        ("product", 1),
        ("inventory_level", 1),
        ("customer", 1),
        ("shipment", 1),
    }
    assert items[("order", 1)]["title"] == "Order"

    order = client.get("/api/v1/schemas/order", headers=headers)
    assert order.status_code == 200
    assert order.get_json()["$id"].endswith("/order/1")
    pinned = client.get("/api/v1/schemas/inventory_level?version=1", headers=headers)
    assert pinned.status_code == 200 and pinned.get_json()["title"] == "InventoryLevel"
    # The flow document's own schema is still served at its fixed path.
    flow = client.get("/api/v1/schemas/flow", headers=headers)
    assert flow.get_json()["title"] == "Flowgate flow definition"


def test_unknown_schema_is_a_problem_404(client, make_user):
    _, headers = make_user("analyst")
    for url in ("/api/v1/schemas/invoice", "/api/v1/schemas/order?version=9"):
        response = client.get(url, headers=headers)
        assert response.status_code == 404, url
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["status"] == 404
    assert client.get("/api/v1/schemas").status_code == 401


def test_canonical_endpoints_are_documented(client, make_user):
    _, headers = make_user("analyst")
    spec = client.get("/api/v1/openapi.json", headers=headers).get_json()
    assert "/api/v1/schemas" in spec["paths"] and "/api/v1/schemas/{name}" in spec["paths"]
