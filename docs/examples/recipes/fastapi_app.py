"""FastAPI: one ``durableflow.Client`` for the app's lifetime, opened in the lifespan.

Run the host (``durableflow serve`` in this folder), then
``DURABLEFLOW_URL=http://127.0.0.1:8787 uvicorn fastapi_app:app``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel
from workflows import Order

from durableflow import Client, NotFoundError, Workflow, WorkflowInstance

if TYPE_CHECKING:
    from env import TypedClient  # written by `durableflow types`


class State(TypedDict):
    durableflow: TypedClient


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    # One client (one connection pool) for every request; closed at shutdown.
    client: TypedClient = Client(
        os.environ.get("DURABLEFLOW_URL", "http://127.0.0.1:8787"),
        token=os.environ.get("DURABLEFLOW_TOKEN"),
    )
    async with client:
        yield {"durableflow": client}


app = FastAPI(lifespan=lifespan)


def orders(request: Request) -> Workflow[Order]:
    client: TypedClient = request.state.durableflow
    return client.workflow("order-processing")  # Workflow[Order], from env.pyi


Orders = Annotated[Workflow[Order], Depends(orders)]


class OrderIn(BaseModel):
    order_id: str
    item: str
    quantity: int


class PaymentIn(BaseModel):
    by: str


async def existing(orders: Workflow[Order], order_id: str) -> WorkflowInstance:
    try:
        return await orders.get(order_id)
    except NotFoundError:
        raise HTTPException(404, f"no order {order_id!r}") from None


@app.post("/orders", status_code=201)
async def place_order(body: OrderIn, orders: Orders) -> dict[str, str]:
    """Start the order's workflow; the order id is the instance id, so a retry is safe."""
    params = Order(order_id=body.order_id, item=body.item, quantity=body.quantity)
    instance = await orders.create(id=body.order_id, params=params)
    return {"order": instance.id}


@app.post("/orders/{order_id}/payment", status_code=202)
async def record_payment(order_id: str, body: PaymentIn, orders: Orders) -> dict[str, str]:
    """The payment provider's callback: hand the payment to the waiting workflow."""
    instance = await existing(orders, order_id)
    await instance.send_event(type="paid", payload={"by": body.by})
    return {"order": order_id}


@app.get("/orders/{order_id}")
async def order_status(order_id: str, orders: Orders) -> dict[str, Any]:
    """Where the order is: its workflow's status and, once shipped, its output."""
    status = await (await existing(orders, order_id)).status()
    return {"order": order_id, "status": status.status, "output": status.output}
