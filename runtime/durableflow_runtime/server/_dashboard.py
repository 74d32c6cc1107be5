"""The dashboard page, served where no route matches."""

from __future__ import annotations

from aiohttp import web

from ..dashboard import DASHBOARD_PATH, page, page_headers
from ._base import Handler


# The page is not API: it is served without a token (it holds no data; its requests to
# /api carry the token) and only when no route matches, so a user route on "/" or
# "/dashboard" wins and the router (and the OpenAPI document) stays about the API.
@web.middleware
async def dashboard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Serve ``GET /dashboard`` and redirect ``GET /`` to it where no route matches."""
    if request.method in ("GET", "HEAD") and isinstance(
        request.match_info.http_exception, web.HTTPNotFound
    ):
        if request.path in (DASHBOARD_PATH, DASHBOARD_PATH + "/"):
            return web.Response(body=page(), headers=page_headers())
        if request.path == "/":
            raise web.HTTPFound(DASHBOARD_PATH)
    return await handler(request)
