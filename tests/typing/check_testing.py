"""Typing cases for durableflow.testing: bindings by class keep their params type."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, assert_type

from durableflow import ErrorInfo, InstanceStatus, Workflow
from durableflow.testing import (
    InstanceIntrospector,
    InstanceModifier,
    WorkflowIntrospector,
    WorkflowTestEnvironment,
    replay,
)

from ._models import OrderParams, OrderWorkflow, RefundParams


async def kit() -> None:
    async with WorkflowTestEnvironment({"ORDERS": OrderWorkflow}, virtual_time=True) as env:
        assert_type(env, WorkflowTestEnvironment)
        orders = env.workflow(OrderWorkflow)
        assert_type(orders, Workflow[OrderParams, str])
        assert_type(await (await orders.get("order-1")).result(), str)
        assert_type(env.workflow("ORDERS"), Workflow[Any])
        probe = env.introspect("order-1")
        assert_type(probe, InstanceIntrospector)
        probe.mock_step_result("charge card", {"charge_id": "ch_1"})
        probe.mock_step_error("ship", RuntimeError("down"), times=2)
        probe.mock_event("approval", {"approved": True})
        probe.disable_sleeps()
        await orders.create(id="order-1", params=OrderParams(order_id="o1", amount=1))
        assert_type(await probe.wait_for_status("complete"), InstanceStatus)
        assert_type(await probe.wait_for_status(["errored", "terminated"]), InstanceStatus)
        assert_type(await probe.get_output(), Any)
        assert_type(await probe.get_error(), ErrorInfo | None)
        assert_type(await probe.wait_for_step_result("charge card"), Any)
        env.advance("1 day")
        env.advance(timedelta(hours=1))
        await env.wait_until_idle()
        await env.wait_until_idle(timeout=1.5)
        assert_type(env.database, Path)
        with env.introspect_workflow(OrderWorkflow) as all_orders:
            assert_type(all_orders, WorkflowIntrospector)

            def setup(m: InstanceModifier) -> None:
                m.disable_sleeps()
                m.mock_event("approval", {"approved": True})

            all_orders.modify_all(setup)
            all_orders.modify_all(lambda m: m.mock_step_result("charge card", 1))
            assert_type(all_orders.get(), list[InstanceIntrospector])
    WorkflowTestEnvironment([OrderWorkflow], database="state.db")


async def must_fail(env: WorkflowTestEnvironment) -> None:
    # Params checked against the class's ParamsT.
    await env.workflow(OrderWorkflow).create(params=RefundParams("x"))  # type: ignore[arg-type]
    # A misspelt status literal.
    probe = env.introspect("order-1", OrderWorkflow)
    await probe.wait_for_status("completed")  # type: ignore[arg-type]
    # A duration of the wrong type.
    env.advance(None)  # type: ignore[arg-type]
    # The timeout is keyword-only.
    await env.wait_until_idle(1.0)  # type: ignore[call-arg]
    # Only workflow classes can be run.
    WorkflowTestEnvironment({"ORDERS": OrderParams})  # type: ignore[dict-item]
    # modify_all takes a function of the modifier.
    env.introspect_workflow(OrderWorkflow).modify_all(probe)  # type: ignore[arg-type]
    env.introspect_workflow(OrderParams)  # type: ignore[arg-type]
    # The database is read-only.
    env.database = Path("x")  # type: ignore[misc]


def replays(history: dict[str, Any], path: Path) -> None:
    """``replay`` takes a workflow class and a history (or its file); it returns nothing."""
    assert_type(replay(OrderWorkflow, history), None)
    replay(OrderWorkflow, path)
    replay(OrderWorkflow, "history.json")
    replay(OrderWorkflow(None), history)  # type: ignore[arg-type]
    replay(OrderWorkflow, [history])  # type: ignore[arg-type]


async def exports(env: WorkflowTestEnvironment) -> None:
    assert_type(await env.export_history("o-1", OrderWorkflow), dict[str, Any])
