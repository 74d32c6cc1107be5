"""An order-processing workflow, and the aiohttp routes of the shop that starts it.

Run it with ``durableflow serve`` in this directory, then::

    curl -X POST localhost:8787/orders -d '{"order_id": "o-1", "item": "book", "quantity": 2}'
    curl -X POST -H 'Content-Type: application/json' localhost:8787/api/workflows/order-processing/instances/o-1/events/approval \
         -d '{"approved": true, "by": "alice"}'
    durableflow instances describe order-processing o-1
"""

from __future__ import annotations

from typing import Any

import attrs
from aiohttp import web

from durableflow import (
    NonRetryableError,
    StepContext,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from durableflow.web import ENV_KEY

# `durableflow types` writes env.pyi declaring `class Env(Protocol)` with one attribute per
# binding; with it, write `WorkflowEntrypoint["Env", Order]` and `env: Env = ...` below.
Env = Any

PRICES = {"book": 12.5, "lamp": 40.0, "mug": 8.0}


@attrs.frozen
class Order:
    """The params of one order: what `POST /orders` receives."""

    order_id: str
    item: str
    quantity: int


class OrderWorkflow(WorkflowEntrypoint[Env, Order]):
    """Price the order, charge it (retried), cool off, wait for approval, ship it."""

    async def run(self, event: WorkflowEvent[Order], step: WorkflowStep) -> dict[str, Any]:
        order = event.payload

        async def price() -> float:
            if order.item not in PRICES:
                raise NonRetryableError(f"unknown item {order.item!r}")  # no retry helps
            return PRICES[order.item] * order.quantity

        total = await step.do("price order", price)

        async def charge(ctx: StepContext) -> dict[str, Any]:
            # A payment gateway that fails the first attempt: the step is retried with the
            # workflow's back-off from durableflow.toml. ctx.step_id is the idempotency key
            # to hand to a real gateway, so a retried charge is never taken twice.
            if ctx.attempt == 1:
                raise ConnectionError("payment gateway timed out")
            return {"charge_id": f"ch_{ctx.step_id[:12]}", "amount": total, "attempt": ctx.attempt}

        payment = await step.do("charge card", charge)

        # A durable sleep: the instance leaves memory and resumes by timer (or after a restart).
        await step.sleep("cool-off period", "2 seconds")

        approval = await step.wait_for_event("wait for approval", "approval", timeout="1 hour")
        if not approval.payload.get("approved"):
            return {"order_id": order.order_id, "status": "rejected", "payment": payment}

        async def ship() -> str:
            return f"TRACK-{order.order_id.upper()}"

        tracking = await step.do("ship", {"retries": {"limit": 5}}, ship)
        return {
            "order_id": order.order_id,
            "status": "shipped",
            "total": total,
            "payment": payment,
            "approved_by": approval.payload.get("by"),
            "tracking": tracking,
        }


routes = web.RouteTableDef()


@routes.post("/orders")
async def create_order(request: web.Request) -> web.Response:
    """Start an order: the body is an `Order` as JSON; its order_id becomes the instance id."""
    env: Env = request.config_dict[ENV_KEY]
    body = await request.json()
    instance = await env.ORDER_FLOW.create(id=body.get("order_id"), params=body)
    return web.json_response({"order": instance.id, "status": "accepted"}, status=201)


@routes.get("/orders/{order_id}")
async def order_status(request: web.Request) -> web.Response:
    """Where an order is: the instance's status and, once shipped, its output."""
    env: Env = request.config_dict[ENV_KEY]
    instance = await env.ORDER_FLOW.get(request.match_info["order_id"])
    status = await instance.status()
    return web.json_response(
        {"order": instance.id, "status": status.status, "output": status.output}
    )
