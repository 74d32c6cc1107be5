"""Typing cases for an aiohttp route handler that uses the env through ENV_KEY."""

from __future__ import annotations

from aiohttp import web

from durableflow.web import ENV_KEY

from ._models import Env, OrderParams

routes = web.RouteTableDef()


@routes.post("/orders")
async def create_order(request: web.Request) -> web.Response:
    env: Env = request.app[ENV_KEY]
    body = await request.json()
    instance = await env.ORDERS.create(
        params=OrderParams(order_id=str(body["order_id"]), amount=int(body["amount"]))
    )
    return web.json_response({"id": instance.id}, status=201)


@routes.post("/refunds")
async def create_refund(request: web.Request) -> web.Response:
    env: Env = request.config_dict[ENV_KEY]
    # Once the env is annotated, a binding checks its params.
    instance = await env.REFUNDS.create(params=OrderParams("o", 1))  # type: ignore[arg-type]
    # ... and an unknown binding is an error.
    await env.INVOICES.create()  # type: ignore[attr-defined]
    return web.json_response({"id": instance.id}, status=201)
