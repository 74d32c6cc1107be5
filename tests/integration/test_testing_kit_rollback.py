"""Rollback in the testing kit works as on a host: mocked failures roll the saga back in
reverse order, rollback retries wait on virtual time, and ``terminate(rollback=True)``
runs the handlers before ``terminated``."""

from __future__ import annotations

import asyncio
from typing import Any

from durableflow import (
    NonRetryableError,
    RollbackContext,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from durableflow.testing import WorkflowTestEnvironment

UNDONE: list[str] = []
FLAKY_UNDO: list[int] = []


class Trip(WorkflowEntrypoint[Any, dict[str, Any]]):
    async def run(self, event: WorkflowEvent[dict[str, Any]], step: WorkflowStep) -> Any:
        async def cancel_hotel(ctx: RollbackContext[str]) -> None:
            UNDONE.append(f"hotel {ctx.output} ({ctx.error.message})")

        async def refund(ctx: RollbackContext[int]) -> None:
            FLAKY_UNDO.append(ctx.output)
            if len(FLAKY_UNDO) < 3:
                raise RuntimeError("payment provider down")
            UNDONE.append(f"refund {ctx.output}")

        async def hotel() -> str:
            return "h-1"

        async def pay() -> int:
            return 300

        async def fly() -> str:
            return "f-1"

        await step.do("hotel", hotel, rollback=cancel_hotel)
        await step.do(
            "pay",
            pay,
            rollback=refund,
            rollback_config={"retries": {"limit": 5, "delay": "1 hour", "backoff": "constant"}},
        )
        if event.payload.get("wait"):
            await step.sleep("until departure", "30 days")
        return await step.do("fly", fly)


async def test_a_mocked_failure_rolls_the_saga_back_on_virtual_time() -> None:
    """A step failed by mock_step_error makes the instance roll back last step first; a
    handler's hour-long retry delays pass on virtual time; the instance ends errored."""
    UNDONE.clear()
    FLAKY_UNDO.clear()
    async with WorkflowTestEnvironment({"TRIP": Trip}) as env:
        probe = env.introspect("t-1")
        probe.mock_step_error("fly", NonRetryableError("no seats"))
        await env.workflow(Trip).create(id="t-1", params={})
        status = await probe.wait_for_status("errored")
        assert status.error is not None and status.error.message == "no seats"
        assert UNDONE == ["refund 300", "hotel h-1 (no seats)"]
        steps = {s["name"]: s for s in await probe.get_steps()}
        assert steps["pay"]["rollback"]["status"] == "complete"
        assert steps["pay"]["rollback"]["attempts"] == 3
        assert steps["fly"]["rollback"] is None  # fly has no rollback handler


async def test_terminate_with_rollback_in_the_kit() -> None:
    """terminate(rollback=True) on a sleeping instance runs its handlers, then it is
    terminated."""
    UNDONE.clear()
    FLAKY_UNDO.clear()
    FLAKY_UNDO.extend([0, 0])  # the refund works at once
    async with WorkflowTestEnvironment({"TRIP": Trip}) as env:
        instance = await env.workflow(Trip).create(id="t-2", params={"wait": True})
        probe = env.introspect("t-2")
        await probe.wait_for_status("waiting")
        await instance.terminate(rollback=True)
        await probe.wait_for_status("terminated")
        assert UNDONE == ["refund 300", "hotel h-1 (Instance terminated during rollback)"]


class Gathered(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def undo(ctx: RollbackContext[str]) -> None:
            UNDONE.append(ctx.step.name)

        async def slow() -> str:
            await asyncio.sleep(0.05)  # ends last, started first
            return "slow"

        async def fast() -> str:
            return "fast"

        await asyncio.gather(
            step.do("first", slow, rollback=undo), step.do("second", fast, rollback=undo)
        )
        raise RuntimeError("after both")


async def test_gathered_steps_roll_back_in_reverse_start_order() -> None:
    """Steps run with asyncio.gather roll back in reverse order of start, not of end."""
    UNDONE.clear()
    async with WorkflowTestEnvironment({"G": Gathered}) as env:
        probe = env.introspect("g-1")
        await env.workflow(Gathered).create(id="g-1")
        await probe.wait_for_status("errored")
    assert UNDONE == ["second", "first"]
