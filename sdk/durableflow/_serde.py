"""One shared cattrs converter and the JSON helpers built on it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import cattrs
import orjson
from cattrs.preconf.orjson import make_converter

from ._errors import SerializationError

__all__ = ["converter", "dumps", "loads", "restore_output", "structure", "unstructure"]

converter = make_converter()
converter.register_structure_hook(uuid.UUID, lambda value, _: uuid.UUID(str(value)))
converter.register_unstructure_hook(uuid.UUID, str)
_PLAIN = frozenset({type(None), bool, int, float, str, list, dict})


def unstructure(value: Any) -> Any:
    """attrs classes (and other cattrs-known types) to plain JSON-ready values."""
    return converter.unstructure(value)


def dumps(value: Any, *, what: str | Callable[[], str]) -> bytes:
    """Serialize a value to JSON bytes.

    Args:
        value: Anything JSON-representable after cattrs unstructuring.
        what: How to name the value in an error ("result of step 'charge'"), or a
            function that says it (called only when there is an error).

    Raises:
        SerializationError: The value (or something inside it) is not JSON-representable.
    """
    if type(value) in _PLAIN:
        try:  # the common case needs no cattrs dispatch: orjson takes it as it is
            return orjson.dumps(value)
        except (TypeError, orjson.JSONEncodeError):
            pass  # e.g. an attrs instance inside a dict: let cattrs unstructure it
    try:
        return orjson.dumps(converter.unstructure(value))
    except (TypeError, orjson.JSONEncodeError) as exc:
        if callable(what):
            what = what()
        raise SerializationError(
            f"{what} is not JSON-representable: {type(value).__name__} ({exc})"
        ) from None


def loads(data: bytes | str | None) -> Any:
    """Parse JSON (``None`` stays ``None``)."""
    return None if data is None else orjson.loads(data)


def structure(value: Any, type_: Any) -> Any:
    """Structure a JSON value into ``type_`` (``Any`` and ``object`` leave it as it is)."""
    if type_ is Any or type_ is object or type_ is None:
        return value
    return converter.structure(value, type_)


def restore_output(value: Any, type_: Any, *, what: str) -> Any:
    """Structure an instance's stored output into the workflow's output type (the return
    annotation of its ``run()``); ``None`` (no output yet) stays ``None``.

    Raises:
        SerializationError: The stored output does not structure into ``type_`` (``run()``
            returned something else than its annotation says).
    """
    if value is None or type_ is Any or type_ is object or type_ is None or type_ is type(None):
        return value
    try:
        return converter.structure(value, type_)
    except Exception as exc:
        raise SerializationError(
            f"{what} does not structure into {getattr(type_, '__qualname__', type_)!s}, "
            f"the return annotation of run(): {describe_structure_error(exc, 'output')}"
        ) from None


def describe_structure_error(exc: Exception, root: str = "params") -> str:
    """One line naming each field that failed to structure."""
    if isinstance(exc, cattrs.BaseValidationError):
        messages = cattrs.transform_error(exc, path=root)
        return "; ".join(messages)
    return f"{root}: {exc}"
