"""Typing cases for rollback handlers: ``RollbackContext[T]`` is typed from the step's
result, in the call form and the decorator form; ``terminate(rollback=True)``."""

from __future__ import annotations

from typing import Any, assert_type

from durableflow import (
    ErrorInfo,
    RollbackContext,
    StatusName,
    StepContext,
    WorkflowInstance,
    WorkflowStep,
)


async def reserve() -> int:
    return 7


async def charge(ctx: StepContext) -> str:
    return ctx.step_id


async def release(ctx: RollbackContext[int]) -> None:
    assert_type(ctx.output, int)
    assert_type(ctx.step, StepContext)
    assert_type(ctx.error, ErrorInfo)


async def refund(ctx: RollbackContext[str]) -> None:
    assert_type(ctx.output, str)


async def anything(ctx: RollbackContext[Any]) -> None:
    pass


async def call_forms(step: WorkflowStep) -> None:
    assert_type(await step.do("reserve", reserve, rollback=release), int)
    assert_type(await step.do("charge", charge, rollback=refund), str)
    assert_type(
        await step.do(
            "charge",
            {"retries": {"limit": 1}},
            charge,
            rollback=refund,
            rollback_config={"retries": {"limit": 3, "delay": "1 second"}, "timeout": "1 minute"},
        ),
        str,
    )
    # a handler of RollbackContext[Any] fits any step
    count: int = await step.do("reserve", reserve, rollback=anything)
    del count


async def decorator_form(step: WorkflowStep) -> None:
    @step.do("reserve", rollback=release, rollback_config={"timeout": "30 seconds"})
    async def reserved() -> int:
        return 1

    @step.do(rollback=refund)
    async def charged(ctx: StepContext) -> str:
        return ctx.name

    assert_type(await reserved(), int)
    assert_type(await charged(), str)


async def terminate(instance: WorkflowInstance) -> None:
    await instance.terminate(rollback=True)
    await instance.terminate()
    status: StatusName = "rollingBack"
    del status


async def must_fail(step: WorkflowStep, instance: WorkflowInstance) -> None:
    # The handler's context holds what the step returns: an int step, a str handler.
    await step.do("reserve", reserve, rollback=refund)  # type: ignore[misc]

    # Likewise in the decorator form.
    @step.do("reserve", rollback=refund)  # type: ignore[arg-type]
    async def reserved() -> int:
        return 1

    # A rollback handler is async.
    def sync_undo(ctx: RollbackContext[int]) -> None:
        pass

    await step.do("reserve", reserve, rollback=sync_undo)  # type: ignore[arg-type]
    # The rollback flag is a keyword.
    await instance.terminate(True)  # type: ignore[call-arg]
    # rollingBack is spelt like Cloudflare's status.
    status: StatusName = "rolling_back"  # type: ignore[assignment]
    del status
