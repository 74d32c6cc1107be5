"""JSON Schema (2020-12) of the types cattrs structures: what a form needs to ask for params.

No maintained library derives JSON Schema from attrs classes as the SDK's cattrs converter
reads them (attrs-jsonschema stopped in 2017 and knows neither cattrs nor enums), so this
module does it for the types params are made of: attrs classes and dataclasses (nested
ones go to ``$defs``), ``bool``/``int``/``float``/``str``, enums, ``Literal``, ``X | None``
and other unions, lists, tuples, sets, ``dict[str, X]``, ``datetime``/``date``/``UUID``,
``NewType`` and ``Annotated``. A type it does not know becomes ``{}`` (any JSON value), so
a form falls back to free JSON there; the host still validates with cattrs.

Keys and defaults follow the converter: a field's key is its attribute name, a field with
``init=False`` is not read, a default is shown as cattrs would unstructure it, and a field
with a default is optional. ``attrs.field(metadata={"description": ...})`` is carried over.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import types
import typing
import uuid
from collections.abc import Mapping, MutableSequence, Sequence, Set
from typing import Any

import attrs

from durableflow import SerializationError
from durableflow._serde import dumps, loads

__all__ = ["json_schema"]

_SCALARS: dict[Any, dict[str, Any]] = {
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string"},
    type(None): {"type": "null"},
    datetime.datetime: {"type": "string", "format": "date-time"},
    datetime.date: {"type": "string", "format": "date"},
    uuid.UUID: {"type": "string", "format": "uuid"},
}
_BUILTIN_FACTORIES = (list, dict, set, frozenset, tuple)


def _json(value: Any) -> Any:
    """``value`` as the converter writes it to JSON (enums as values, times as strings)."""
    return loads(dumps(value, what="a default"))


def json_schema(type_: Any) -> dict[str, Any] | None:
    """The JSON Schema of values that structure into ``type_``.

    Args:
        type_: A params (or payload) type; ``Any`` means "not declared".

    Returns:
        A schema document (with ``$defs`` for the classes it names), or ``None`` when
        ``type_`` is ``Any`` or ``object``: nothing is declared, any JSON value goes.
    """
    if type_ is Any or type_ is object:
        return None
    builder = _Builder()
    root = builder.schema(type_)
    if builder.defs:
        root = {**root, "$defs": dict(sorted(builder.defs.items()))}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **root}


class _Builder:
    def __init__(self) -> None:
        self.defs: dict[str, dict[str, Any]] = {}
        self.names: dict[Any, str] = {}

    def schema(self, tp: Any) -> dict[str, Any]:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Annotated:
            return self.schema(args[0])
        if isinstance(tp, typing.NewType):
            return self.schema(tp.__supertype__)
        if tp is Any or tp is object:
            return {}
        if tp in _SCALARS:
            return dict(_SCALARS[tp])
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return self.enum(tp)
        if origin is typing.Literal:
            return {"enum": [_json(a) for a in args]}
        if origin is typing.Union or origin is types.UnionType:
            return {"anyOf": [self.schema(a) for a in args]}
        if attrs.has(tp) or dataclasses.is_dataclass(tp):
            return self.named(tp)
        container = origin or tp
        if isinstance(container, type):
            return self.container(container, args)
        return {}

    def enum(self, tp: type[enum.Enum]) -> dict[str, Any]:
        values = [_json(member.value) for member in tp]
        schema: dict[str, Any] = {"title": tp.__name__, "enum": values}
        kinds = {type(v) for v in values}
        if kinds == {str}:
            schema["type"] = "string"
        elif kinds == {int}:
            schema["type"] = "integer"
        return schema

    def container(self, tp: type, args: tuple[Any, ...]) -> dict[str, Any]:
        if issubclass(tp, str | bytes):
            return {"type": "string"}
        if issubclass(tp, Mapping):
            value = self.schema(args[1]) if len(args) == 2 else {}
            return {"type": "object", "additionalProperties": value}
        if issubclass(tp, tuple):
            if len(args) == 2 and args[1] is Ellipsis:
                return {"type": "array", "items": self.schema(args[0])}
            if args and args != ((),):
                items = [self.schema(a) for a in args]
                n = len(items)
                return {"type": "array", "prefixItems": items, "minItems": n, "maxItems": n}
            return {"type": "array"}
        if issubclass(tp, Set):
            schema: dict[str, Any] = {"type": "array", "uniqueItems": True}
        elif issubclass(tp, Sequence | MutableSequence):
            schema = {"type": "array"}
        else:
            return {}
        if args:
            schema["items"] = self.schema(args[0])
        return schema

    def named(self, cls: Any) -> dict[str, Any]:
        """A ``$ref`` to the class's schema in ``$defs`` (built once, so recursion ends)."""
        if cls not in self.names:
            name = cls.__name__
            taken = set(self.names.values())
            suffix = 2
            while name in taken:
                name = f"{cls.__name__}{suffix}"
                suffix += 1
            self.names[cls] = name
            self.defs[name] = {}  # a placeholder: a field of the same class refers to it
            self.defs[name] = self.object(cls)
        return {"$ref": f"#/$defs/{self.names[cls]}"}

    def object(self, cls: Any) -> dict[str, Any]:
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except Exception:  # a name the class's module cannot resolve: its fields take any JSON
            hints = {}
        properties: dict[str, Any] = {}
        required: list[str] = []
        for name, default, description in _fields(cls):
            schema = self.schema(hints.get(name, Any))
            if description:
                schema = {**schema, "description": description}
            if default is _REQUIRED:
                required.append(name)
            elif default is not _UNKNOWN:
                try:
                    schema = {**schema, "default": _json(default)}
                except SerializationError:  # not JSON after unstructuring: leave it unsaid
                    schema = dict(schema)
            properties[name] = schema
        schema = {"title": cls.__name__, "type": "object", "properties": properties}
        if required:
            schema["required"] = required
        doc = (cls.__doc__ or "").strip()
        if doc and not doc.startswith(f"{cls.__name__}("):  # not a dataclass's own repr
            schema["description"] = doc.split("\n\n")[0].replace("\n", " ")
        return schema


_REQUIRED = object()
_UNKNOWN = object()


def _fields(cls: Any) -> list[tuple[str, Any, str | None]]:
    """``(key, default, description)`` of each field cattrs reads, in order."""
    found = []
    if attrs.has(cls):
        for a in attrs.fields(cls):
            if not a.init:
                continue
            description = a.metadata.get("description")
            found.append((a.name, _attrs_default(a.default), description))
        return found
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            factory = f.default_factory
            default = factory() if factory in _BUILTIN_FACTORIES else _UNKNOWN
        else:
            default = _REQUIRED
        found.append((f.name, default, f.metadata.get("description")))
    return found


def _attrs_default(default: Any) -> Any:
    if default is attrs.NOTHING:
        return _REQUIRED
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        # only a builtin container's factory is called: a user's may have side effects
        if not default.takes_self and default.factory in _BUILTIN_FACTORIES:
            return default.factory()
        return _UNKNOWN
    return default
