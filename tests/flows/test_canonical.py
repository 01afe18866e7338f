"""The canonical retail model: shipped schemas, validation with JSON pointers, flow checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from connectors.registry import load_registry
from flows import canonical, mapping
from flows.definition import FlowDefinition
from flows.validation import validate as validate_flow

FIXTURES = Path("/work/shared/fixtures/retail")
CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "flows"
NAMES = ["customer", "inventory_level", "order", "product", "shipment"]

# A demo-like mapping from the commerce order fixture to the canonical Order.
ORDER_TO_CANONICAL = """{
  'orderNumber': 'WEB-' & $string(order_number),
  'channel': 'web',
  'orderedAt': created_at,
  'currency': currency,
  'customer': {'email': email, 'name': customer.first_name & ' ' & customer.last_name},
  'shipTo': {
    'name': shipping_address.first_name & ' ' & shipping_address.last_name,
    'street': shipping_address.address1,
    'city': shipping_address.city,
    'postcode': shipping_address.zip,
    'country': shipping_address.country_code
  },
  'lines': [line_items.{
    'sku': sku,
    'quantity': quantity,
    'unitPrice': $number(price),
    'taxAmount': $sum(tax_lines.$number(price))
  }],
  'totals': {'gross': $number(total_price)}
}"""

ORDER = {
    "orderNumber": "WEB-1001",
    "orderedAt": "2026-11-20T09:15:01+00:00",
    "currency": "GBP",
    "customer": {"email": "a@example.com"},
    "lines": [{"sku": "TSH-ORG-BLK-M", "quantity": 1, "unitPrice": 24.0}],
    "totals": {"gross": 28.8},
}


def _order_fixture() -> dict:
    path = FIXTURES / "commerce-order-created.json"
    if not path.exists():
        path = Path(__file__).resolve().parents[2] / "app" / "demo" / "commerce-order-created.json"
    return json.loads(path.read_text("utf-8"))


def test_every_schema_is_listed_and_a_valid_draft_2020_12_schema():
    infos = canonical.list_schemas()
    assert [(i.name, i.version) for i in infos] == [(n, 1) for n in NAMES]
    for info in infos:
        doc = canonical.load(info.name, info.version)
        Draft202012Validator.check_schema(doc)
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert doc["$id"].endswith(f"/{info.name}/{info.version}")
        assert doc["title"] == info.title and info.description
        for prop in doc["properties"].values():
            assert "description" in prop or "$ref" in prop


def test_latest_version_and_unknown_names():
    assert canonical.load("order")["title"] == "Order"
    assert canonical.exists("order", 1) and not canonical.exists("order", 2)
    with pytest.raises(canonical.UnknownSchema):
        canonical.load("invoice")
    with pytest.raises(canonical.UnknownSchema):
        canonical.load("order", 9)


def test_mapped_demo_order_validates():
    mapped = mapping.evaluate(ORDER_TO_CANONICAL, _order_fixture())
    assert canonical.validate("order", 1, mapped) == []
    assert canonical.validate("order", 1, ORDER) == []


def test_wrong_types_and_missing_fields_give_pointer_paths():
    bad = json.loads(json.dumps(ORDER))
    bad["currency"] = "pounds"
    bad["orderedAt"] = "20/11/2026"
    bad["lines"][0]["quantity"] = "1"
    bad["lines"].append({"sku": "X", "quantity": 0, "unitPrice": 1})
    del bad["customer"]["email"]
    del bad["totals"]["gross"]
    paths = {p.path for p in canonical.validate("order", 1, bad)}
    assert paths == {
        "/currency",
        "/orderedAt",
        "/lines/0/quantity",
        "/lines/1/quantity",
        "/customer",
        "/totals",
    }
    missing = canonical.validate("order", 1, {})
    assert {p.path for p in missing} == {""}
    assert any("'orderNumber' is a required property" == p.message for p in missing)


@pytest.mark.parametrize(
    ("name", "instance"),
    [
        (
            "product",
            {
                "productId": "P-1",
                "title": "Organic tee",
                "variants": [{"sku": "A", "gtin": "5066203715418", "price": 24, "currency": "GBP"}],
            },
        ),
        ("inventory_level", {"sku": "A", "location": "LDS-01", "onHand": 5, "reserved": 1}),
        ("customer", {"customerId": "C-1", "email": "a@example.com", "givenName": "Zoë"}),
        (
            "shipment",
            {
                "shipmentId": "S-1",
                "orderNumber": "WEB-1001",
                "shippedAt": "2026-11-21T16:44:00Z",
                "lines": [{"sku": "A", "quantity": 2}],
            },
        ),
    ],
)
def test_other_schemas_accept_a_sensible_instance_and_reject_bad_ones(name, instance):
    assert canonical.validate(name, 1, instance) == []
    assert canonical.validate(name, 1, [])[0].path == ""


def test_product_variant_price_needs_a_currency():
    doc = {"productId": "P", "title": "T", "variants": [{"sku": "A", "price": 1}]}
    assert [p.path for p in canonical.validate("product", 1, doc)] == ["/variants/0"]


def _flow_with(input_schema: dict) -> dict:
    doc = json.loads((CORPUS / "valid" / "web_order_to_oms.json").read_text())
    doc.pop("$expect", None)
    deliver = next(i for i, s in enumerate(doc["steps"]) if s["type"] == "deliver")
    doc["steps"][deliver]["input_schema"] = input_schema
    return doc, deliver


def _lookup(connection_id: int) -> str | None:
    return {3: "http"}.get(connection_id)


def test_flow_validation_knows_the_declared_schema():
    registry = load_registry()
    doc, i = _flow_with({"name": "order", "version": 1})
    assert validate_flow(doc, registry, _lookup) == []
    assert FlowDefinition.from_json(doc).steps[i].input_schema == ("order", 1)

    doc, i = _flow_with({"name": "invoice", "version": 1})
    found = {(p.path, p.code) for p in validate_flow(doc, registry, _lookup)}
    assert found == {(f"/steps/{i}/input_schema", "unknown_schema")}

    doc, i = _flow_with({"name": "order", "version": 7})
    found = {(p.path, p.code) for p in validate_flow(doc, registry, _lookup)}
    assert found == {(f"/steps/{i}/input_schema/version", "unknown_schema")}

    doc, i = _flow_with({"name": "order"})
    found = {(p.path, p.code) for p in validate_flow(doc, registry, _lookup)}
    assert found == {(f"/steps/{i}/input_schema", "schema")}
