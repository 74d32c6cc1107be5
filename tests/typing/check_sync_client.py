"""Typing cases for durableflow.SyncClient and its bindings, SyncWorkflow and
SyncWorkflowInstance: Client's API, without await."""

from __future__ import annotations

from typing import Any, assert_type

from durableflow import (
    BulkResult,
    CreateOptions,
    InstanceStatus,
    StepRef,
    SyncClient,
    SyncWorkflow,
    SyncWorkflowInstance,
    Workflow,
)

from ._models import OrderParams, Receipt, RefundParams


def use_sync_client() -> None:
    with SyncClient("http://127.0.0.1:8787", token="secret", timeout=5.0, retries=1) as client:
        assert_type(client, SyncClient)
        orders = client.workflow("order-processing", OrderParams)
        assert_type(orders, SyncWorkflow[OrderParams])
        assert_type(client.workflow("order-processing"), SyncWorkflow[Any])
        instance = orders.create(id="o1", params=OrderParams(order_id="o1", amount=3))
        assert_type(instance, SyncWorkflowInstance)
        assert_type(instance.id, str)
        batch = orders.create_batch([CreateOptions(id="a", params=OrderParams("a", 1))])
        assert_type(batch, list[SyncWorkflowInstance])
        assert_type(orders.get("o1"), SyncWorkflowInstance)
        assert_type(instance.status(), InstanceStatus)
        instance.pause()
        instance.resume()
        instance.send_event(type="approved", payload={"ok": True})
        instance.terminate()
        instance.restart()
        instance.restart(from_step=StepRef("ship", type="do"))
        instance.restart({"name": "ship"})
        assert_type(orders.bulk("delete", ids=["o1"]), list[BulkResult])
        assert_type(orders.bulk("pause", status="waiting"), list[BulkResult])
        assert_type(orders.delete_batch(["o1"]), list[str])
        instance.delete()
        assert_type(instance.result(timeout=5), Any)
        assert_type(client.workflows(), list[dict[str, Any]])
        typed = client.workflow("order-processing", OrderParams, output_type=Receipt)
        assert_type(typed, SyncWorkflow[OrderParams, Receipt])
        assert_type(typed.get("o1").result(), Receipt)
        assert_type(typed.get("o1").status(), InstanceStatus[Receipt])
        assert_type(client.workflow("x", output_type=Receipt), SyncWorkflow[Any, Receipt])
        assert_type(client.schedules(), list[dict[str, Any]])
        assert_type(client.pause_schedule("nightly"), dict[str, Any])
        assert_type(orders.create(priority=10), SyncWorkflowInstance[Any])
    SyncClient("http://127.0.0.1:8787").close()


def must_fail() -> None:
    client = SyncClient("http://127.0.0.1:8787")
    # An action a bulk call does not know; delete_batch takes ids, not instances.
    client.workflow("x").bulk("archive", ids=["a"])  # type: ignore[arg-type]
    client.workflow("x").delete_batch([client.workflow("x").get("a")])  # type: ignore[list-item]
    # The token is keyword-only.
    SyncClient("http://127.0.0.1:8787", "secret")  # type: ignore[call-arg]
    orders = client.workflow("order-processing", OrderParams)
    # Params of the wrong type.
    orders.create(params=RefundParams("ch_1"))  # type: ignore[arg-type]
    # id and params are keyword-only.
    orders.create("o1")  # type: ignore[call-arg]
    # A sync binding is not an async one: nothing to await, and not a Workflow.
    async_binding: Workflow[OrderParams] = orders  # type: ignore[assignment]
    del async_binding


async def awaiting_is_an_error() -> None:
    client = SyncClient("http://127.0.0.1:8787")
    await client.workflow("order-processing").create()  # type: ignore[misc]
