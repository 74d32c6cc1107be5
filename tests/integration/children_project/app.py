"""Workflows of the child-workflow host tests: a parent that fans out to children and
gathers their outputs, a child, and a parent that starts children without waiting."""

from __future__ import annotations

import asyncio
from typing import Any

from durableflow import (
    ChildWorkflowError,
    NonRetryableError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)


class FanOut(WorkflowEntrypoint[Any, Any]):
    """Runs params["n"] children at once (asyncio.gather over run_workflow) and returns the
    sum of their outputs; child params["fail"] fails; params["ms"] is each child's sleep.
    A failed child is reported as {"failed": id, "status": ..., "error": name}."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        params = event.payload
        ms = params.get("ms", 0)
        timeout = params.get("timeout")
        calls = [
            step.run_workflow(
                f"child-{i}",
                self.env.CHILD,
                params={"n": i, "ms": ms, "fail": i == params.get("fail")},
                timeout=timeout,
            )
            for i in range(params["n"])
        ]
        try:
            outputs = await asyncio.gather(*calls)
        except ChildWorkflowError as exc:
            return {"failed": exc.instance_id, "status": exc.status, "error": exc.error.name}
        return sum(outputs)


class Child(WorkflowEntrypoint[Any, Any]):
    """Sleeps params["ms"] milliseconds (durably), then returns 2 * params["n"], or fails
    for good when params["fail"]."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        params = event.payload
        if params.get("ms"):
            await step.sleep("pause", params["ms"])

        async def work() -> int:
            if params.get("fail"):
                raise NonRetryableError(f"child {params['n']} fails")
            return 2 * int(params["n"])

        return await step.do("work", work)


class Starter(WorkflowEntrypoint[Any, Any]):
    """Starts params["n"] children without waiting (start_workflow), then waits for an
    event "done"; returns the children's ids."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        params = event.payload
        ids = [
            await step.start_workflow(
                f"start-{i}", self.env.CHILD, params={"n": i, "ms": params.get("ms", 0)}
            )
            for i in range(params["n"])
        ]
        await step.wait_for_event("finish", "done", timeout="1 hour")
        return ids
