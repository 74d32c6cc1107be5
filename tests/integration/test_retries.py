"""Retries: limits, back-off, per-attempt timeouts, NonRetryableError, durable delays."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

from durableflow import (
    NonRetryableError,
    RetryConfig,
    StepConfig,
    StepConfigDict,
    StepContext,
    StepFailedError,
    StepTimeoutError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from durableflow.testing import WorkflowTestEnvironment

if TYPE_CHECKING:  # a module-level TestRuntime would be collected by pytest as a test class
    from durableflow_runtime.testing import TestRuntime

ATTEMPTS: list[int] = []


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class AlwaysFails(WorkflowEntrypoint[Any, dict[str, Any]]):
    async def run(self, event: WorkflowEvent[dict[str, Any]], step: WorkflowStep) -> Any:
        @step.do("charge", config={"retries": event.payload["retries"]})
        async def charge(ctx: StepContext) -> str:
            ATTEMPTS.append(ctx.attempt)
            raise ConnectionError(f"attempt {ctx.attempt} failed")

        return await charge()


@pytest.mark.parametrize(
    ("backoff", "gaps"),
    [("constant", [2, 2, 2]), ("linear", [2, 4, 6]), ("exponential", [2, 4, 8])],
)
async def test_limit_counts_retries_and_backoff_spaces_them(backoff, gaps):
    """limit=3 runs four attempts, spaced by the back-off; the last error ends the instance."""
    ATTEMPTS.clear()
    async with WorkflowTestEnvironment({"fails": AlwaysFails}) as env:
        probe = env.introspect("f")
        params = {"retries": {"limit": 3, "delay": "2 seconds", "backoff": backoff}}
        await env.workflow(AlwaysFails).create(id="f", params=params)
        status = await probe.wait_for_status("errored")
        assert status.error is not None
        assert (status.error.name, status.error.message) == ("ConnectionError", "attempt 4 failed")
        assert ATTEMPTS == [1, 2, 3, 4]
        [step] = await probe.get_steps()
        assert step["attempts"] == 4 and step["status"] == "failed"
        starts = [_ts(a["started_at"]) for a in step["attempt_log"]]
        ends = [_ts(a["ended_at"]) for a in step["attempt_log"]]
        assert [round(starts[i + 1] - ends[i], 3) for i in range(3)] == gaps
        assert all(a["error"]["name"] == "ConnectionError" for a in step["attempt_log"])


class Recovers(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def flaky(ctx: StepContext) -> int:
            ATTEMPTS.append(ctx.attempt)
            if ctx.attempt < 3:
                raise ValueError("not yet")
            return ctx.attempt

        config = StepConfig(retries=RetryConfig(limit=5, delay="1 hour", backoff="constant"))
        return await step.do("flaky", config, flaky)


async def test_long_retry_delay_is_a_durable_timer():
    """A one-hour back-off suspends the instance (no memory) and survives an engine restart."""
    ATTEMPTS.clear()
    async with WorkflowTestEnvironment({"r": Recovers}) as env:
        probe = env.introspect("r")
        await env.workflow(Recovers).create(id="r")
        await probe.wait_for_status("waiting")
        # white-box: the kit's runtime is private, so the public stubs do not show it
        runtime: TestRuntime = env._runtime_or_fail()  # type: ignore[attr-defined]
        assert runtime.engine._active == {}
        [step] = await probe.get_steps()
        assert step["status"] == "retrying" and step["wake_at"] is not None
        await env.restart()
        status = await probe.wait_for_status("complete")
        assert status.output == 3
        assert ATTEMPTS == [1, 2, 3]


class NonRetryable(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def refuse() -> None:
            ATTEMPTS.append(1)
            raise NonRetryableError("card declined")

        try:
            await step.do("charge", refuse)
        except StepFailedError as exc:
            return {"error": exc.error_name, "message": exc.error_message}


async def test_non_retryable_error_fails_at_once_and_can_be_caught():
    """NonRetryableError stops after one attempt and raises into run(), where it is caught."""
    ATTEMPTS.clear()
    async with WorkflowTestEnvironment({"n": NonRetryable}) as env:
        probe = env.introspect("n")
        await env.workflow(NonRetryable).create(id="n")
        status = await probe.wait_for_status("complete")
        assert status.output == {"error": "NonRetryableError", "message": "card declined"}
        assert ATTEMPTS == [1]


CANCELLED: list[int] = []


class Slow(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def hang(ctx: StepContext) -> str:
            if ctx.attempt == 1:
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    CANCELLED.append(ctx.attempt)
                    raise
            return f"attempt {ctx.attempt}"

        config: StepConfigDict = {"timeout": "200 ms", "retries": {"limit": 1, "delay": 0}}
        first = await step.do("hang", config, hang)

        async def hang_forever() -> None:
            await asyncio.sleep(30)

        try:
            await step.do("forever", {"timeout": "100 ms", "retries": {"limit": 0}}, hang_forever)
        except StepTimeoutError as exc:
            return [first, exc.error_name]
        return [first, "no timeout"]


async def test_timeout_cancels_the_attempt_and_counts_as_a_failure():
    """An attempt over its timeout is really cancelled and retried; the last one raises StepTimeoutError."""
    CANCELLED.clear()
    async with WorkflowTestEnvironment({"s": Slow}, virtual_time=False) as env:
        probe = env.introspect("s")
        await env.workflow(Slow).create(id="s")
        status = await probe.wait_for_status(["complete", "errored"], timeout=20)
        assert status.output == ["attempt 2", "StepTimeoutError"], status
        assert CANCELLED == [1]
        steps = {s["name"]: s for s in await probe.get_steps()}
        assert steps["hang"]["attempt_log"][0]["error"]["name"] == "StepTimeoutError"
        assert steps["forever"]["status"] == "failed"
