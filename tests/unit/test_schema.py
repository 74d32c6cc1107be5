"""The JSON Schema the host derives from a params type, as the dashboard's forms read it."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import uuid
from typing import Annotated, Any, Literal, NewType

import attrs

from durableflow._serde import converter
from durableflow_runtime.schema import json_schema


class Speed(enum.Enum):
    STANDARD = "standard"
    EXPRESS = "express"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@attrs.frozen
class Address:
    city: str = attrs.field(metadata={"description": "Where it goes."})
    zip: str | None = None


@attrs.frozen
class Order:
    """An order to ship."""

    item: str
    quantity: int = 1
    speed: Speed = Speed.STANDARD
    tags: list[str] = attrs.field(factory=list)
    ship_to: Address | None = None
    home: Address = attrs.field(factory=lambda: Address("Paris"))
    kind: Literal["gift", "own"] = "own"
    computed: int = attrs.field(init=False, default=0)
    children: list[Order] = attrs.field(factory=list)


UserId = NewType("UserId", int)


@dataclasses.dataclass
class Misc:
    at: datetime.datetime
    on: datetime.date
    ref: uuid.UUID
    pair: tuple[int, str]
    many: tuple[float, ...]
    unique: set[str]
    counts: dict[str, int]
    user: UserId
    note: Annotated[str, "meta"] = "n"
    anything: Any = None
    extra: list[int] = dataclasses.field(default_factory=list)


def defs(type_: Any) -> dict[str, Any]:
    schema = json_schema(type_)
    assert schema is not None
    return dict(schema["$defs"])


def test_attrs_class_fields_defaults_and_required() -> None:
    """Fields become properties by attribute name; only fields without a default are required."""
    schema = json_schema(Order)
    assert schema is not None
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$ref"] == "#/$defs/Order"
    order = schema["$defs"]["Order"]
    assert order["required"] == ["item"]
    assert order["description"] == "An order to ship."
    props = order["properties"]
    assert list(props) == [
        "item",
        "quantity",
        "speed",
        "tags",
        "ship_to",
        "home",
        "kind",
        "children",
    ]
    assert props["quantity"] == {"type": "integer", "default": 1}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}, "default": []}
    assert "default" not in props["home"]  # a user's factory is never called


def test_enums_literals_and_optional_nested_classes() -> None:
    """Enums and Literals are enums of their JSON values; X | None is anyOf with null."""
    props = defs(Order)["Order"]["properties"]
    assert props["speed"] == {
        "title": "Speed",
        "enum": ["standard", "express"],
        "type": "string",
        "default": "standard",
    }
    assert props["kind"] == {"enum": ["gift", "own"], "default": "own"}
    assert props["ship_to"] == {
        "anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}],
        "default": None,
    }
    assert defs(Order)["Address"] == {
        "title": "Address",
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "Where it goes."},
            "zip": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        },
        "required": ["city"],
    }
    schema = json_schema(Level)
    assert schema is not None and schema["enum"] == [1, 2] and schema["type"] == "integer"


def test_recursive_classes_refer_to_themselves() -> None:
    """A class that contains itself is described once and referred to."""
    props = defs(Order)["Order"]["properties"]
    assert props["children"]["items"] == {"$ref": "#/$defs/Order"}


def test_scalars_containers_and_wrappers() -> None:
    """Times, UUIDs, tuples, sets, dicts, NewType and Annotated map to their JSON forms."""
    props = defs(Misc)["Misc"]["properties"]
    assert props["at"] == {"type": "string", "format": "date-time"}
    assert props["on"] == {"type": "string", "format": "date"}
    assert props["ref"] == {"type": "string", "format": "uuid"}
    assert props["pair"] == {
        "type": "array",
        "prefixItems": [{"type": "integer"}, {"type": "string"}],
        "minItems": 2,
        "maxItems": 2,
    }
    assert props["many"] == {"type": "array", "items": {"type": "number"}}
    assert props["unique"] == {"type": "array", "uniqueItems": True, "items": {"type": "string"}}
    assert props["counts"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert props["user"] == {"type": "integer"}
    assert props["note"] == {"type": "string", "default": "n"}
    assert props["anything"] == {"default": None}
    assert props["extra"] == {"type": "array", "items": {"type": "integer"}, "default": []}
    assert defs(Misc)["Misc"]["required"] == [
        "at",
        "on",
        "ref",
        "pair",
        "many",
        "unique",
        "counts",
        "user",
    ]


def test_undeclared_types_have_no_schema() -> None:
    """Any (no params type) has no schema; a plain type has its own."""
    assert json_schema(Any) is None
    assert json_schema(object) is None
    assert json_schema(list[int]) == {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "array",
        "items": {"type": "integer"},
    }


def test_defaults_are_what_the_converter_accepts() -> None:
    """Every default in the schema structures back into its field (the form may send it)."""
    props = defs(Order)["Order"]["properties"]
    order = {"item": "book", **{k: v["default"] for k, v in props.items() if "default" in v}}
    assert converter.structure(order, Order) == Order(item="book")


@attrs.frozen
class Dangling:
    known: int
    unknown: NoSuchType  # type: ignore[name-defined]  # noqa: F821


def test_unresolvable_annotations_take_any_json() -> None:
    """A class whose annotations cannot be resolved still has its fields, each any JSON."""
    props = defs(Dangling)["Dangling"]["properties"]
    assert props == {"known": {}, "unknown": {}}
