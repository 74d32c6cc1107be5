"""Typing cases for durableflow.Client, the HTTP binding for a separate service."""

from __future__ import annotations

from typing import Any, assert_type

from durableflow import Client, Workflow, WorkflowInstance

from ._models import OrderParams, Receipt, RefundParams


async def use_client() -> None:
    async with Client("http://127.0.0.1:8787", token="secret", timeout=5.0) as client:
        assert_type(client, Client)
        orders = client.workflow("order-processing", OrderParams)
        assert_type(orders, Workflow[OrderParams])
        assert_type(client.workflow("order-processing"), Workflow[Any])
        instance = await orders.create(params=OrderParams(order_id="o1", amount=3))
        assert_type(instance, WorkflowInstance)
        assert_type(await client.workflows(), list[dict[str, Any]])
        # the output type: result() and status().output are restored to it
        typed = client.workflow("order-processing", OrderParams, output_type=Receipt)
        assert_type(typed, Workflow[OrderParams, Receipt])
        assert_type(typed, Workflow[OrderParams, Receipt])
        receipt = await (await typed.get("o1")).result()
        assert_type(receipt, Receipt)
        assert_type((await (await typed.get("o1")).status()).output, Receipt)
        only_output = client.workflow("order-processing", output_type=Receipt)
        assert_type(only_output, Workflow[Any, Receipt])
        # Workflow[P] is Workflow[P, Any]
        assert_type(orders, Workflow[OrderParams, Any])
        assert_type(await instance.result(), Any)
        assert_type(await client.schedules(), list[dict[str, Any]])
        assert_type(await client.pause_schedule("nightly"), dict[str, Any])
        assert_type(await client.resume_schedule("nightly"), dict[str, Any])
        assert_type(await orders.create(priority=10, concurrency_key="c1"), WorkflowInstance[Any])
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
    # The output type is a class too, and a typed result is checked.
    client.workflow("order-processing", OrderParams, Receipt("x"))  # type: ignore[call-overload]
    typed = client.workflow("order-processing", OrderParams, output_type=Receipt)
    total: int = await (await typed.get("o1")).result()  # type: ignore[assignment]
    del total
    # The URL is a string.
    Client(8787)  # type: ignore[arg-type]
    # workflows() is a coroutine.
    names: list[dict[str, Any]] = client.workflows()  # type: ignore[assignment]
    # a schedule is named by a string
    await client.pause_schedule()  # type: ignore[call-arg]
    del names
