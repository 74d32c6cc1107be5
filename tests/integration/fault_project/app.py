"""Workflows of the fault tests: every step run is logged, so a test can count them."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from durableflow import StepContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep

#: The file each step run appends one line to: ``<instance> <step name> <attempt>``.
LOG_ENV = "DURABLEFLOW_FAULT_LOG"


def record(instance: str, ctx: StepContext) -> None:
    """Log one run of a step callback (a side effect the test counts)."""
    fd = os.open(os.environ[LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, f"{instance} {ctx.name} {ctx.attempt}\n".encode())
    finally:
        os.close(fd)


class CountedWorkflow(WorkflowEntrypoint[Any, Any]):
    """``steps`` logged steps, with a ``sleep_ms`` durable sleep after each but the last."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        params = event.payload or {}
        steps = int(params.get("steps", 2))
        sleep_ms = int(params.get("sleep_ms", 0))
        total = 0
        for i in range(steps):

            async def work(ctx: StepContext) -> int:
                record(event.instance_id, ctx)
                return ctx.count

            total += await step.do(f"s{i}", work)
            if sleep_ms and i < steps - 1:
                await step.sleep(f"nap{i}", sleep_ms)
        return total


class GatedWorkflow(WorkflowEntrypoint[Any, Any]):
    """One logged step that runs until the file ``params["gate"]`` exists (a step in flight)."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        gate = event.payload["gate"]

        async def wait_for_gate(ctx: StepContext) -> str:
            record(event.instance_id, ctx)
            while not os.path.exists(gate):  # noqa: ASYNC110, ASYNC240 - a file the test makes
                await asyncio.sleep(0.02)
            return "passed"

        return await step.do("s0", wait_for_gate)
