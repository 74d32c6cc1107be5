"""Many instances: bounded concurrency, queued rest, no memory for sleepers."""

from __future__ import annotations

import asyncio
from typing import Any

from durableflow import CreateOptions, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from durableflow.testing import WorkflowTestEnvironment

RUNNING = [0, 0]  # current, peak


class Busy(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def work() -> int:
            RUNNING[0] += 1
            RUNNING[1] = max(RUNNING)
            await asyncio.sleep(0.005)
            RUNNING[0] -= 1
            return 1

        a = await step.do("a", work)
        await step.sleep("overnight", "8 hours")
        b = await step.do("b", work)
        return a + b


async def test_concurrency_is_bounded_and_sleepers_hold_no_memory():
    """With max_concurrency=10, 300 instances never run more than 10 at once, and all
    300 sleep as rows only, then finish."""
    RUNNING[:] = [0, 0]
    async with WorkflowTestEnvironment({"busy": Busy}, max_concurrency=10) as env:
        wf = env.workflow(Busy)
        for start in range(0, 300, 100):
            await wf.create_batch([CreateOptions(id=f"b{n}") for n in range(start, start + 100)])
        engine = env._runtime_or_fail().engine  # type: ignore[attr-defined]

        async def all_waiting() -> bool:
            items, _ = await engine.list_instances("busy", status="waiting", limit=1000)
            return len(items) == 300

        while not await all_waiting():
            assert len(engine._active) <= 10
            await asyncio.sleep(0.01)
        assert engine._active == {}
        assert RUNNING[1] <= 10
        for n in (0, 150, 299):
            status = await env.introspect(f"b{n}").wait_for_status("complete")
            assert status.output == 2
        items, _ = await engine.list_instances("busy", status="complete", limit=1000)
        assert len(items) == 300
        assert RUNNING[1] <= 10
