"""Typing cases for step configs (attrs and dict forms) and durations."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, assert_type

import attrs

from durableflow import (
    Backoff,
    DelayFunction,
    Duration,
    ResolvedRetryConfig,
    ResolvedStepConfig,
    RetryableError,
    RetryConfig,
    RetryConfigDict,
    StepConfig,
    StepConfigDict,
    StepContext,
    WorkflowEvent,
    WorkflowStep,
)


async def fetch() -> int:
    return 1


def durations_and_configs() -> None:
    # Every spelling of a duration.
    durations: list[Duration] = [timedelta(seconds=5), 250, 1.5, "10 seconds", "5m"]
    retries = RetryConfig(limit=5, delay="10 seconds", backoff="exponential")
    config = StepConfig(retries=retries, timeout=timedelta(minutes=10))
    assert_type(config.retries, RetryConfig | None)
    assert_type(config.timeout, Duration | None)
    # The attrs classes are attrs classes to mypy too.
    assert_type(attrs.evolve(config, timeout="1 hour"), StepConfig)
    as_dict: StepConfigDict = {"retries": {"limit": 1}, "timeout": "1 minute"}
    retry_dict: RetryConfigDict = {"backoff": "linear"}
    backoff: Backoff = "constant"
    del durations, as_dict, retry_dict, backoff


def resolved(ctx: StepContext) -> None:
    assert_type(ctx.config, ResolvedStepConfig)
    assert_type(ctx.config.delay_before_retry(2), float)
    # Cloudflare's ResolvedStepConfig shape: retries.{limit, delay, backoff}, timeout, sensitive
    assert_type(ctx.config.retries, ResolvedRetryConfig)
    assert_type(ctx.config.retries.limit, int)
    assert_type(ctx.config.retries.delay, timedelta | None)
    assert_type(ctx.config.retries.backoff, Backoff)
    assert_type(ctx.config.timeout, timedelta)
    assert_type(ctx.config.sensitive, Literal["output"] | None)
    assert_type(ctx.attempt, int)
    assert_type(ctx.step_id, str)


def delay_of(attempt: int, error: BaseException) -> Duration:
    return f"{attempt * 2} seconds"


async def async_delay_of(attempt: int, error: BaseException) -> Duration:
    return timedelta(seconds=attempt)


async def step_options(step: WorkflowStep, event: WorkflowEvent[int]) -> None:
    # a delay function, plain or async, in both forms of the config
    await step.do("a", {"retries": {"limit": 3, "delay": delay_of}}, fetch)
    await step.do("b", {"retries": {"delay": async_delay_of}}, fetch)
    await step.do("c", StepConfig(retries=RetryConfig(delay=delay_of)), fetch)
    await step.do("d", {"retries": {"delay": lambda attempt, error: attempt * 1000}}, fetch)
    function: DelayFunction = delay_of
    # sensitive outputs
    await step.do("e", {"sensitive": "output"}, fetch)
    assert_type(StepConfig(sensitive="output").sensitive, Literal["output"] | None)
    # retry after
    error = RetryableError("rate limited", retry_after="30 seconds")
    assert_type(error.retry_after, float | None)
    assert_type(event.workflow_name, str)
    del function


async def must_fail(step: WorkflowStep) -> None:
    # A misspelt key in the dict form of a config: mypy names no overload of do() that
    # matches (an overloaded call cannot report the key itself) ...
    await step.do("a", {"retry": {"limit": 3}}, fetch)  # type: ignore[call-overload]
    await step.do("b", {"retries": {"limt": 3}}, fetch)  # type: ignore[call-overload]

    @step.do("c", config={"timout": "1 minute"})  # type: ignore[call-overload, untyped-decorator]
    async def c() -> int:
        return 1

    # ... while a config kept in an annotated variable gets the precise error.
    config_dict: StepConfigDict = {"timout": "1 minute"}  # type: ignore[typeddict-unknown-key]
    retry_dict: RetryConfigDict = {"limit": "3"}  # type: ignore[typeddict-item]
    # A value of the wrong type in the dict form.
    await step.do("d", {"retries": {"limit": "3"}}, fetch)  # type: ignore[call-overload]
    # An unknown backoff.
    RetryConfig(backoff="fibonacci")  # type: ignore[arg-type]
    # Durations are timedeltas, milliseconds or strings; not None, not bytes.
    await step.sleep("nap", None)  # type: ignore[arg-type]
    await step.sleep("nap", b"1 day")  # type: ignore[arg-type]
    await step.wait_for_event("approval", "approved", timeout=[1])  # type: ignore[call-overload]
    StepConfig(timeout=object())  # type: ignore[arg-type]
    del config_dict, retry_dict
    # Configs are frozen.
    config = StepConfig()
    config.timeout = "1 minute"  # type: ignore[misc]
    # Only "output" is sensitive; a delay function takes (attempt, error).
    StepConfig(sensitive="input")  # type: ignore[arg-type]
    await step.do("f", {"sensitive": "all"}, fetch)  # type: ignore[call-overload]
    RetryConfig(delay=lambda attempt: 5)  # type: ignore[arg-type, misc]
    RetryableError("busy", retry_after=b"1s")  # type: ignore[arg-type]
    RetryableError("busy", "1s")  # type: ignore[call-arg]
    # Configs are not ordered.
    assert RetryConfig() < RetryConfig()  # type: ignore[operator]
