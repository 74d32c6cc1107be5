"""Reading a request: its JSON body, its keys, its ids and query parameters."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from durableflow._types import check_id

from ..engine import Engine
from ._base import ENGINE_KEY, ApiError

#: Deepest nesting of arrays and objects accepted in a JSON body.
MAX_JSON_DEPTH = 128
_INTEGER = re.compile(r"-?[0-9]{1,18}")
_SECONDS = re.compile(r"(?:[0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})(?:[eE][-+]?[0-9]{1,3})?")

_ABSENT: Any = object()


async def _body(request: web.Request) -> Any:
    """The parsed JSON body, or ``_ABSENT`` when there is none."""
    raw = await request.read()
    if not raw.strip():
        return _ABSENT
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    check_json_depth(value)
    return value


def check_json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse arrays and objects nested deeper than ``limit``, without recursing.

    Raises:
        ApiError: 400 ``invalid_json`` naming the limit.
    """
    level: list[Any] = [value]
    depth = 0
    while level:
        containers = [v for v in level if isinstance(v, dict | list)]
        if not containers:
            return
        depth += 1
        if depth > limit:
            raise ApiError(
                400, "invalid_json", f"request body is nested more than {limit} levels deep"
            )
        level = [item for c in containers for item in (c.values() if isinstance(c, dict) else c)]


async def _object_body(request: web.Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    body = await _body(request)
    if body is _ABSENT:
        return {}
    if not isinstance(body, dict):
        raise ApiError(
            400, "invalid_request", f"request body must be a JSON object, not {_json_type(body)}"
        )
    _check_keys(body, allowed, "request body")
    return body


def _check_keys(data: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ApiError(
            400,
            "invalid_request",
            f"unknown key(s) in {where}: {', '.join(map(repr, unknown))} "
            f"(allowed: {', '.join(allowed)})",
        )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _instance_id(value: Any, where: str) -> str | None:
    if value is _ABSENT:
        return None
    if not isinstance(value, str):
        raise ApiError(400, "invalid_request", f"{where} must be a string, not {_json_type(value)}")
    return check_id(value)


def _query_int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):  # int() would also take "1_0", " 5" and other digits
        raise ApiError(
            400, "invalid_request", f"query parameter {name!r} must be an integer, not {raw!r}"
        )
    return int(raw)


def _query_seconds(request: web.Request, name: str, default: float, maximum: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    value = float(raw) if _SECONDS.fullmatch(raw) else math.nan
    if not 0 <= value <= maximum:
        raise ApiError(
            400,
            "invalid_request",
            f"query parameter {name!r} must be a number of seconds from 0 to {maximum:g}, "
            f"not {raw!r}",
        )
    return value


def _engine(request: web.Request) -> Engine:
    return request.config_dict[ENGINE_KEY]


def _workflow(request: web.Request) -> str:
    name = request.match_info["name"]
    _engine(request).spec(name)  # NotFoundError -> 404
    return name
