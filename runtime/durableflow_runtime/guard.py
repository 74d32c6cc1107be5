"""Connection hygiene for the host's HTTP server: idle timeouts, a connection cap, and
JSON answers to requests that are not HTTP enough to reach a route.

aiohttp keeps a connection that never sends a request open for its keep-alive time
(an hour by default), so a few thousand idle sockets exhaust the process's file handles.
Here:

- ``idle_timeout`` closes a connection that has no request in progress after that long:
  from the moment it opens (a client that never finishes its headers, as in slowloris,
  is closed too: partial bytes do not reset the clock) and after each answer.
- ``max_connections`` caps open connections. When a new one arrives at the cap, the
  longest-open connection *without a request in progress* is closed to make room, so a
  flood of idle sockets cannot keep ``/healthz`` (or anyone) out; when every connection
  is busy, the new one is closed at once. Either way one WARNING line says so, at most
  every :data:`WARN_EVERY` seconds.
- Protocol errors (a bad request line, method or header bytes) answer the API's JSON
  error shape and echo nothing of the request.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

__all__ = ["ConnectionGuard", "GuardedSite", "effective_connection_limit"]

log = logging.getLogger("durableflow.server")

#: Seconds between two warnings that the connection cap was reached.
WARN_EVERY = 10.0
#: File handles kept free for the store, logs and the user's code.
RESERVED_FILES = 128

_PROTOCOL_MESSAGES = {
    400: ("invalid_request", "malformed HTTP request"),
    405: ("method_not_allowed", "unsupported HTTP method"),
    413: ("payload_too_large", "request line or headers too large"),
    431: ("headers_too_large", "request headers too large"),
}


def effective_connection_limit(wanted: int) -> int:
    """``wanted``, lowered to what the process's open-file limit allows.

    The soft limit is raised to the hard one first (servers commonly do), so a machine
    that allows many files gets the configured cap.
    """
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    except (OSError, ValueError):  # not allowed here: keep what we have
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft - RESERVED_FILES))


class ConnectionGuard:
    """Counts the server's connections and enforces the cap (see the module docstring)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[GuardedHandler, None] = {}  # insertion order: oldest first
        self.evicted = 0
        self.refused = 0
        self._warned_at = -WARN_EVERY

    def opened(self, handler: GuardedHandler) -> bool:
        """Register a new connection; ``False`` when it must be closed at once."""
        self.open[handler] = None
        if len(self.open) <= self.limit:
            return True
        for other in self.open:
            if other is not handler and not other.busy:
                other.force_close()
                self.open.pop(other, None)
                self.evicted += 1
                self._warn("closed the longest-open idle connection to make room")
                return True
        self.open.pop(handler, None)
        self.refused += 1
        self._warn("every connection is busy: refused a new one")
        return False

    def closed(self, handler: GuardedHandler) -> None:
        self.open.pop(handler, None)

    def _warn(self, what: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            log.warning(
                "connection limit of %d reached ([server] max_connections): %s "
                "(so far: %d idle closed, %d refused)",
                self.limit,
                what,
                self.evicted,
                self.refused,
            )


class GuardedHandler(RequestHandler):
    """aiohttp's connection handler, counted by a :class:`ConnectionGuard`."""

    def __init__(self, manager: web.Server, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard

    @property
    def busy(self) -> bool:
        """A request of this connection is being handled."""
        return bool(getattr(self, "_request_in_progress", False))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self._guard.opened(self):
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._guard.closed(self)
        super().connection_lost(exc)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Answer the JSON error shape, never echoing the request."""
        if status >= 500:
            log.error("error handling a request", exc_info=exc)
            code, text = "internal", "internal error (see the host's log)"
        else:
            log.debug("refused a malformed request (%d): %s", status, type(exc).__name__)
            code, text = _PROTOCOL_MESSAGES.get(status, (f"http_{status}", "bad request"))
        if request.writer.output_size > 0:
            raise ConnectionError("the answer has started: cannot send an error answer")
        response = web.Response(
            body=orjson.dumps({"error": {"code": code, "message": text}}),
            status=status,
            content_type="application/json",
        )
        response.force_close()
        return response


class GuardedSite(web.TCPSite):
    """A TCP site whose connections are :class:`GuardedHandler` instances."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        *,
        guard: ConnectionGuard,
        handler_args: dict[str, Any],
    ) -> None:
        super().__init__(runner, host, port)
        self._guard = guard
        self._handler_args = handler_args

    async def start(self) -> None:
        # BaseSite.start registers the site with its runner; TCPSite.start would then
        # listen with aiohttp's own handler class, so listen here instead.
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None

        def factory() -> GuardedHandler:
            return GuardedHandler(server, self._guard, loop=loop, **self._handler_args)

        self._server = await loop.create_server(
            factory, self._host, self._port, reuse_address=self._reuse_address
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
