"""Delay functions and RetryableError in the testing kit (virtual time): async delay
functions, one that hangs, and retry_after winning over the function."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
from typing import Any

from durableflow import (
    RetryableError,
    StepContext,
    StepFailedError,
    ValidationError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from durableflow.testing import WorkflowTestEnvironment

CALLS: list[tuple[int, str]] = []


async def slow_delay(attempt: int, error: BaseException) -> str:
    CALLS.append((attempt, type(error).__name__))
    return f"{attempt * 30} s"


async def hanging_delay(attempt: int, error: BaseException) -> str:
    await asyncio.Event().wait()
    return "1 s"


class AsyncDelays(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        mode = event.payload

        async def flaky(ctx: StepContext) -> int:
            if ctx.attempt < 3:
                if mode == "retry-after":
                    raise RetryableError("busy", retry_after="7 s")
                raise ConnectionError("down")
            return ctx.attempt

        delay = hanging_delay if mode == "hang" else slow_delay
        try:
            return await step.do("flaky", {"retries": {"limit": 3, "delay": delay}}, flaky)
        except StepFailedError as exc:
            return f"{exc.error_name}: {exc.error_message}"


def _starts(step: dict[str, Any]) -> list[float]:
    times = [datetime.fromisoformat(a["started_at"]) for a in step["attempt_log"]]
    return [(b - a).total_seconds() for a, b in itertools.pairwise(times)]


async def test_async_delay_functions_and_retry_after_in_the_kit() -> None:
    """An async delay function sets each back-off; retry_after wins over it (it is not
    called); a delay function that hangs fails the step with a TimeoutError."""
    CALLS.clear()
    async with WorkflowTestEnvironment([AsyncDelays]) as env:
        workflow = env.workflow(AsyncDelays)
        probe = env.introspect("a-1")
        await workflow.create(id="a-1", params="plain")
        assert (await probe.wait_for_status("complete")).output == 3
        [flaky] = await probe.get_steps()
        assert _starts(flaky) == [30.0, 60.0]
        assert CALLS == [(1, "ConnectionError"), (2, "ConnectionError")]

        CALLS.clear()
        probe = env.introspect("a-2")
        await workflow.create(id="a-2", params="retry-after")
        assert (await probe.wait_for_status("complete")).output == 3
        [flaky] = await probe.get_steps()
        assert _starts(flaky) == [7.0, 7.0]
        assert CALLS == []

        probe = env.introspect("a-3")
        await workflow.create(id="a-3", params="hang")
        status = await probe.wait_for_status("complete", timeout=30)
        assert status.output == (
            "TimeoutError: the delay function of step 'flaky' did not return within 5 seconds"
        )
        [flaky] = await probe.get_steps()
        assert flaky["attempts"] == 1
        assert flaky["attempt_log"][0]["error"]["name"] == "ConnectionError"


async def test_a_delay_function_sees_timeouts_and_mocked_errors() -> None:
    """The delay function gets a StepTimeoutError for a timed-out attempt, and a mocked
    error as the error it raised; RetryableError mocked with retry_after wins."""
    CALLS.clear()
    async with WorkflowTestEnvironment([AsyncDelays]) as env:
        probe = env.introspect("t-1")
        probe.force_step_timeout("flaky", times=1)
        probe.mock_step_error("flaky", KeyError("gone"), times=1)
        await env.workflow(AsyncDelays).create(id="t-1", params="plain")
        # attempts 1 and 2 are mocked; attempt 3 runs the callback, which succeeds
        assert (await probe.wait_for_status("complete")).output == 3
        assert CALLS == [(1, "StepTimeoutError"), (2, "KeyError")]
        [flaky] = await probe.get_steps()
        assert flaky["attempt_log"][0]["error"]["name"] == "StepTimeoutError"

        CALLS.clear()
        probe = env.introspect("t-2")
        probe.mock_step_error("flaky", RetryableError("later", retry_after="45 s"), times=2)
        await env.workflow(AsyncDelays).create(id="t-2", params="plain")
        assert (await probe.wait_for_status("complete")).output == 3
        [flaky] = await probe.get_steps()
        assert _starts(flaky) == [45.0, 45.0]
        assert CALLS == []


class RollbackWithDelayFunction(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> str:
        async def reserve() -> str:
            return "reserved"

        async def release(ctx: Any) -> None:
            return None

        config: Any = {"retries": {"delay": slow_delay}}
        try:
            await step.do("reserve", reserve, rollback=release, rollback_config=config)
        except ValidationError as exc:
            return str(exc)
        return "accepted"


async def test_a_delay_function_in_rollback_config_is_refused() -> None:
    """A rollback's retries take durations only: a delay function there is a clear error,
    not a silently zero delay."""
    async with WorkflowTestEnvironment([RollbackWithDelayFunction]) as env:
        instance = await env.workflow(RollbackWithDelayFunction).create()
        assert await instance.result() == (
            "step 'reserve': rollback_config cannot take a delay function; "
            "give its retries a duration"
        )
