"""Typing cases for WorkflowStep.do: the call form, the decorator form, callbacks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import assert_type

from durableflow import RetryConfig, StepConfig, StepConfigDict, StepContext, WorkflowStep


async def fetch_count() -> int:
    return 1


async def fetch_name(ctx: StepContext) -> str:
    return ctx.step_id


def sync_callback() -> int:
    return 1


async def two_args(ctx: StepContext, extra: int) -> int:
    return extra


async def call_form(step: WorkflowStep) -> None:
    # The result type flows from the callback, with no argument or a StepContext.
    assert_type(await step.do("count", fetch_count), int)
    assert_type(await step.do("name", fetch_name), str)

    # A lambda returning a coroutine is a callback too.
    assert_type(await step.do("lambda", lambda: fetch_count()), int)


async def call_form_with_config(step: WorkflowStep) -> None:
    # Dict form of the config, attrs form of the config, each with both callback shapes.
    config: StepConfigDict = {
        "retries": {"limit": 3, "delay": "1 second", "backoff": "linear"},
        "timeout": 30_000,
    }
    assert_type(await step.do("a", config, fetch_count), int)
    assert_type(
        await step.do("b", {"retries": {"limit": 3, "backoff": "constant"}}, fetch_name), str
    )
    assert_type(await step.do("c", StepConfig(retries=RetryConfig(limit=2)), fetch_count), int)
    assert_type(await step.do("d", StepConfig(timeout="5 minutes"), fetch_name), str)


async def decorator_forms(step: WorkflowStep) -> None:
    @step.do("named")
    async def named() -> int:
        return 1

    @step.do("named with config", config={"timeout": "1 minute"})
    async def named_with_config(ctx: StepContext) -> str:
        return ctx.name

    @step.do()
    async def unnamed() -> bytes:
        return b""

    @step.do(config=StepConfig(timeout="10 seconds"))
    async def config_only(ctx: StepContext) -> float:
        return float(ctx.attempt)

    @step.do
    async def bare() -> list[int]:
        return [1]

    @step.do
    async def bare_with_ctx(ctx: StepContext) -> dict[str, int]:
        return {"count": ctx.count}

    # The decorated function becomes a zero-argument awaitable of the callback's result.
    assert_type(named, Callable[[], Awaitable[int]])
    assert_type(await named(), int)
    assert_type(await named_with_config(), str)
    assert_type(await unnamed(), bytes)
    assert_type(await config_only(), float)
    assert_type(await bare(), list[int])
    assert_type(await bare_with_ctx(), dict[str, int])


async def must_fail(step: WorkflowStep) -> None:
    # A synchronous callback is not a step callback.
    await step.do("sync", sync_callback)  # type: ignore[arg-type]
    # Nor is a callback of two parameters.
    await step.do("two", two_args)  # type: ignore[arg-type]

    # A decorated step with a synchronous body.
    @step.do("sync decorated")  # type: ignore[arg-type]
    def sync_body() -> int:
        return 1

    # The decorated step is called without arguments, even if the body takes a ctx.
    @step.do("ctx")
    async def with_ctx(ctx: StepContext) -> int:
        return ctx.attempt

    await with_ctx(None)  # type: ignore[call-arg]

    # Awaiting the decorated function itself instead of calling it.
    @step.do("fetch")
    async def fetch() -> int:
        return 1

    await fetch  # type: ignore[misc]
    # Using the awaitable as if it were the value.
    value: int = fetch()  # type: ignore[assignment]
    # Awaiting the decorator instead of decorating a function.
    await step.do("oops")  # type: ignore[misc]
    # The result keeps the callback's type.
    text: str = await step.do("count", fetch_count)  # type: ignore[arg-type]
    # A step name is a string.
    await step.do(42, fetch_count)  # type: ignore[call-overload]
    # Forgetting to await a step is caught, in both forms.
    step.do("forgotten", fetch_count)  # type: ignore[unused-coroutine]
    fetch()  # type: ignore[unused-awaitable]
    del value, text
