"""The workflow of the flow-control and schedule tests: one step that records, in the file
named by ``FLOW_LOG``, when it started and ended (so a test sees from outside how many ran
at once, and which ran at all)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import attrs

from durableflow import WorkflowEntrypoint, WorkflowEvent, WorkflowStep


@attrs.frozen
class Job:
    customer: str = "anyone"
    hold: float = 0.0  # seconds the step takes


def record(what: str, instance: str, customer: str) -> None:
    # one short O_APPEND write per line: lines from several hosts never interleave
    line = f"{what} {instance} {time.time():.6f} {customer}\n".encode()
    fd = os.open(os.environ["FLOW_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class RecordedWorkflow(WorkflowEntrypoint[Any, Job]):
    """Records its step's start, holds for ``hold`` seconds, records its end."""

    async def run(self, event: WorkflowEvent[Job], step: WorkflowStep) -> Any:
        job = event.payload

        async def work() -> str:
            record("start", event.instance_id, job.customer)
            await asyncio.sleep(job.hold)
            record("end", event.instance_id, job.customer)
            return "done"

        return await step.do("work", work)


class HookedWorkflow(WorkflowEntrypoint[Any, Job]):
    """Runs its step, then waits on a hook whose token is ``go-<instance id>``."""

    async def run(self, event: WorkflowEvent[Job], step: WorkflowStep) -> Any:
        job = event.payload

        async def work() -> str:
            record("start", event.instance_id, job.customer)
            record("end", event.instance_id, job.customer)
            return "done"

        await step.do("work", work)
        got = await step.wait_for_event("go", "go", token=f"go-{event.instance_id}")
        return got.payload
