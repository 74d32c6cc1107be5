"""What every part of the server shares: its settings, the app keys, the JSON answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
import orjson
from aiohttp import web

from ..engine import Engine

log = logging.getLogger("durableflow.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@attrs.define
class ApiSettings:
    """What the HTTP layer needs besides the engine.

    Attributes:
        token: Bearer token required on ``/api`` (``None``: open).
        max_body_bytes: Largest request body accepted.
        workflows: What ``GET /api/workflows`` lists, one dict per workflow.
        stopping: Set when the host shuts down: long polls answer at once.
        dashboard: Serve the dashboard page at ``/dashboard`` (``/`` redirects to it).
        cors_origins: Other origins (``scheme://host[:port]``) allowed to call ``/api``
            from a browser.
        local_only: Answer ``/api`` only for requests whose ``Host`` names this machine
            (set for a host on loopback without a token: no DNS rebinding).
    """

    token: str | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    workflows: list[dict[str, Any]] = attrs.field(factory=list)
    stopping: asyncio.Event = attrs.field(factory=asyncio.Event)
    dashboard: bool = True
    cors_origins: frozenset[str] = frozenset()
    local_only: bool = False


ENGINE_KEY: web.AppKey[Engine] = web.AppKey("durableflow.engine", Engine)
SETTINGS_KEY: web.AppKey[ApiSettings] = web.AppKey("durableflow.settings", ApiSettings)


class ApiError(Exception):
    """An error answer: HTTP status, a machine-readable code and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The JSON error answer ``{"error": {"code", "message"}}``."""
    return _json({"error": {"code": code, "message": message}}, status, headers)
