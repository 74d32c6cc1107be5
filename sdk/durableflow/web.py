"""What user aiohttp routes mounted by the host (``app = "app:routes"``) use.

The host stores the workflow bindings under :data:`ENV_KEY` on its aiohttp application,
so a handler reaches them in a typed way::

    from aiohttp import web
    from durableflow.web import ENV_KEY

    routes = web.RouteTableDef()

    @routes.post("/orders")
    async def create_order(request: web.Request) -> web.Response:
        env = request.config_dict[ENV_KEY]
        instance = await env.ORDER_FLOW.create(params=await request.json())
        return web.json_response({"id": instance.id}, status=201)

``request.config_dict`` also finds the key from a sub-application; with the generated
``env.pyi`` (``durableflow types``), annotate ``env: Env = request.config_dict[ENV_KEY]``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

__all__ = ["ENV_KEY"]

ENV_KEY: web.AppKey[Any] = web.AppKey("durableflow.env", object)
"""The host's ``env``: one attribute per workflow binding (``env.ORDER_FLOW``)."""
