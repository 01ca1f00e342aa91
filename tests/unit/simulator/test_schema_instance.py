"""The schema instance generator: every value it makes validates (checked by `jsonschema` with format
checking, and by pydantic for pydantic-generated schemas), and the same material gives the same value."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Literal
from uuid import UUID

import pytest
from jsonschema import Draft7Validator, Draft202012Validator
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field

from gateway.simulator.schema_instance import SchemaError, schema_instance

MATERIALS = [f"material-{i}".encode() for i in range(25)]


def assert_valid(schema: dict[str, Any], value: Any) -> None:
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = [e.message for e in validator.iter_errors(value)]
    assert not errors, (errors, value)


HAND_WRITTEN: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 30, "maxLength": 40},
        "short": {"type": "string", "maxLength": 4},
        "colour": {"enum": ["red", "green", "blue"]},
        "kind": {"const": "fixed"},
        "when": {"type": "string", "format": "date-time"},
        "day": {"type": "string", "format": "date"},
        "mail": {"type": "string", "format": "email"},
        "link": {"type": "string", "format": "uri"},
        "ident": {"type": "string", "format": "uuid"},
        "ip": {"type": "string", "format": "ipv4"},
        "ip6": {"type": "string", "format": "ipv6"},
        "count": {"type": "integer", "exclusiveMinimum": 10, "maximum": 12},
        "negative": {"type": "integer", "maximum": -50},
        "even": {"type": "integer", "multipleOf": 7, "minimum": 1, "maximum": 30},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "step": {"type": "number", "multipleOf": 0.1, "minimum": 0, "maximum": 1},
        "flag": {"type": "boolean"},
        "nothing": {"type": "null"},
        "maybe": {"type": ["string", "null"]},
        "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        "one": {"oneOf": [{"type": "boolean"}, {"type": "string"}]},
        "both": {"allOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]},
                           {"properties": {"b": {"type": "string"}}, "required": ["b"]}]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 5},
        "few": {"type": "array", "items": {"type": "integer"}, "maxItems": 1},
        "distinct": {"type": "array", "items": {"enum": ["x", "y", "z"]}, "minItems": 3, "uniqueItems": True},
        "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}], "items": False},
        "nested": {"type": "object", "properties": {"deep": {"type": "object", "properties": {
            "deeper": {"type": "array", "items": {"$ref": "#/$defs/leaf"}}}, "required": ["deeper"]}},
            "required": ["deep"]},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}, "minProperties": 2},
        "anything": {},
    },
    "required": ["title", "colour", "count", "nested"],
    "additionalProperties": False,
    "$defs": {"leaf": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}},
}


@pytest.mark.parametrize("material", MATERIALS)
def test_hand_written_schema_instances_validate(material: bytes) -> None:
    value = schema_instance(HAND_WRITTEN, material)
    assert_valid(HAND_WRITTEN, value)
    assert set(value) == set(HAND_WRITTEN["properties"])  # optional properties are filled in too
    assert isinstance(value["either"], int) and isinstance(value["one"], bool)  # first branch


def test_same_material_same_value_and_materials_vary() -> None:
    values = [json.dumps(schema_instance(HAND_WRITTEN, m), sort_keys=True) for m in MATERIALS]
    assert values == [json.dumps(schema_instance(HAND_WRITTEN, m), sort_keys=True) for m in MATERIALS]
    assert len(set(values)) == len(values)


class Address(BaseModel):
    street: str
    city: str = Field(min_length=3, max_length=12)
    postcode: str | None = None


class Node(BaseModel):
    name: str
    children: list[Node] = []


class Person(BaseModel):
    name: str
    age: int = Field(ge=0, le=130)
    height: float = Field(gt=0, lt=3)
    role: Literal["admin", "user"]
    born: dt.date
    seen: dt.datetime
    wake: dt.time
    id: UUID
    addresses: list[Address] = Field(min_length=1)
    home: Address | None
    scores: dict[str, int]
    tree: Node
    share: float = Field(multiple_of=0.25, ge=0, le=1)


@pytest.mark.parametrize("schema", [Person.model_json_schema(), to_strict_json_schema(Person)],
                         ids=["pydantic", "openai-strict"])
def test_pydantic_schemas_with_defs_and_refs_validate_in_pydantic_and_jsonschema(schema: dict[str, Any]) -> None:
    assert "$defs" in schema
    for material in MATERIALS:
        value = schema_instance(schema, material)
        assert_valid(schema, value)
        person = Person.model_validate_json(json.dumps(value))
        assert person.addresses and person.tree.name


def test_recursion_stops_at_the_depth_limit() -> None:
    value = schema_instance(Node.model_json_schema(), b"tree")
    depth, node = 0, value
    while node.get("children"):  # optional below the limit, so left out there
        node, depth = node["children"][0], depth + 1
    assert 2 <= depth <= 8
    Node.model_validate(value)


def test_draft7_definitions_and_tuple_items() -> None:
    schema = {"definitions": {"p": {"type": "integer", "minimum": 5, "maximum": 5}},
              "type": "array", "items": [{"$ref": "#/definitions/p"}, {"type": "string"}],
              "additionalItems": False}
    value = schema_instance(schema, b"x")
    assert value[0] == 5 and isinstance(value[1], str)
    assert not list(Draft7Validator(schema).iter_errors(value))


@pytest.mark.parametrize("schema", [
    {"$ref": "#/$defs/missing"},
    {"$ref": "https://example.com/schema.json"},
    {"$defs": {"a": {"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}, "required": ["a"]}},
     "$ref": "#/$defs/a"},
    {"type": "integer", "minimum": 5, "maximum": 4},
    {"type": "array", "items": {"enum": ["x"]}, "minItems": 2, "uniqueItems": True},
    {"type": "object", "properties": {"a": 3}},
    {"$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"},
    {"type": "array", "minItems": 10**9},
    {"type": "object", "properties": {f"p{i}": {"type": "array", "items": {"$ref": "#"}} for i in range(20)}},
])
def test_impossible_unresolvable_or_huge_schemas_raise_schema_error(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        schema_instance(schema, b"x")
