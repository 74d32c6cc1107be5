"""Typing cases for durableflow.Client, the HTTP binding for a separate service."""

from __future__ import annotations

from typing import Any, assert_type

from durableflow import Client, Workflow, WorkflowInstance

from ._models import OrderParams, RefundParams


async def use_client() -> None:
    async with Client("http://127.0.0.1:8787", token="secret", timeout=5.0) as client:
        assert_type(client, Client)
        orders = client.workflow("order-processing", OrderParams)
        assert_type(orders, Workflow[OrderParams])
        assert_type(client.workflow("order-processing"), Workflow[Any])
        instance = await orders.create(params=OrderParams(order_id="o1", amount=3))
        assert_type(instance, WorkflowInstance)
        assert_type(await client.workflows(), list[dict[str, Any]])
    plain = Client("http://127.0.0.1:8787")
    await plain.close()


async def must_fail() -> None:
    client = Client("http://127.0.0.1:8787")
    # The token is keyword-only.
    Client("http://127.0.0.1:8787", "secret")  # type: ignore[call-arg]
    # A binding typed by the client checks params like any binding.
    orders = client.workflow("order-processing", OrderParams)
    await orders.create(params=RefundParams("ch_1"))  # type: ignore[arg-type]
    # The params type is a class, not an instance.
    client.workflow("order-processing", OrderParams("o", 1))  # type: ignore[call-overload]
    # The URL is a string.
    Client(8787)  # type: ignore[arg-type]
    # workflows() is a coroutine.
    names: list[dict[str, Any]] = client.workflows()  # type: ignore[assignment]
    del names
