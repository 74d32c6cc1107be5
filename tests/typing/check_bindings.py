"""Typing cases for bindings: Workflow[ParamsT], WorkflowInstance, InstanceStatus."""

from __future__ import annotations

from typing import Any, Literal, assert_type

from durableflow import (
    BulkResult,
    CreateOptions,
    ErrorInfo,
    InstanceStatus,
    StatusName,
    StepRef,
    Workflow,
    WorkflowInstance,
)

from ._models import OrderParams, RefundParams


async def create_and_steer(orders: Workflow[OrderParams]) -> None:
    instance = await orders.create(id="order-1", params=OrderParams(order_id="o1", amount=5))
    assert_type(instance, WorkflowInstance)
    assert_type(instance.id, str)
    assert_type(await orders.create(), WorkflowInstance)
    batch = await orders.create_batch(
        [CreateOptions(id="a", params=OrderParams("a", 1)), CreateOptions(params=None)]
    )
    assert_type(batch, list[WorkflowInstance])
    assert_type(await orders.get("order-1"), WorkflowInstance)
    status = await instance.status()
    assert_type(status, InstanceStatus)
    assert_type(status.status, StatusName)
    assert_type(status.error, ErrorInfo | None)
    assert_type(status.output, Any)
    if status.status == "waitingForPause":
        await instance.resume()
    await instance.pause()
    await instance.terminate()
    await instance.restart()
    await instance.restart(from_step=StepRef("charge card"))
    await instance.restart(StepRef("approval", count=2, type="wait_for_event"))
    await instance.restart(from_step={"name": "charge card", "count": 1, "type": "do"})
    await instance.delete()
    results = await orders.bulk("terminate", ids=["a", "b"])
    assert_type(results, list[BulkResult])
    assert_type(results[0].result, Literal["applied", "skipped"])
    assert_type(results[0].reason, str | None)
    assert_type(await orders.bulk("delete", status="errored"), list[BulkResult])
    assert_type(await orders.delete_batch(["a"]), list[str])
    await instance.send_event(type="approved", payload={"ok": True})
    assert_type(await instance.result(timeout=5), Any)


async def flow_control(orders: Workflow[OrderParams]) -> None:
    params = OrderParams(order_id="o1", amount=5)
    urgent = await orders.create(params=params, priority=90, concurrency_key="customer-7")
    assert_type(urgent, WorkflowInstance[Any])
    assert_type(await orders.create(params=params, priority=None), WorkflowInstance[Any])


async def untyped(binding: Workflow[Any]) -> None:
    await binding.create(params={"anything": [1, 2]})


async def must_fail(orders: Workflow[OrderParams], instance: WorkflowInstance) -> None:
    # Params of the wrong type.
    await orders.create(params=RefundParams("ch_1"))  # type: ignore[arg-type]
    await orders.create(params={"order_id": "o1", "amount": 5})  # type: ignore[arg-type]
    await orders.create_batch([CreateOptions(params=RefundParams("x"))])  # type: ignore[arg-type]
    # id and params are keyword-only.
    await orders.create("order-1")  # type: ignore[call-arg]
    # priority is a number from 0 to 100, the concurrency key a string.
    await orders.create(priority="high")  # type: ignore[arg-type]
    await orders.create(concurrency_key=7)  # type: ignore[arg-type]
    # A misspelt status literal.
    status = await instance.status()
    finished = status.status == "completed"  # type: ignore[comparison-overlap]
    InstanceStatus(status="done")  # type: ignore[arg-type]
    wanted: StatusName = "Complete"  # type: ignore[assignment]
    # Restart from a step kind that does not exist; a bulk action that does not exist.
    StepRef("charge card", type="waitForEvent")  # type: ignore[arg-type]
    await instance.restart(from_step="charge card")  # type: ignore[arg-type]
    await orders.bulk("archive", ids=["a"])  # type: ignore[arg-type]
    await orders.bulk("delete", status="done")  # type: ignore[arg-type]
    # send_event takes its type by keyword.
    await instance.send_event("approved")  # type: ignore[call-arg]
    # Bindings are abstract: the host makes them.
    Workflow()  # type: ignore[abstract]
    del wanted, finished
