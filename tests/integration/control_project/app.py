"""Workflows of the restart-from, delete and bulk tests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from durableflow import NonRetryableError, WorkflowEntrypoint, WorkflowEvent, WorkflowStep


def _log(path: str, line: str) -> None:
    with Path(path).open("a") as file:
        file.write(line + "\n")


class OrderWorkflow(WorkflowEntrypoint[Any, Any]):
    """reserve, wait for approval, charge card (fails until params["fix"] exists), ship;
    each step's run is logged to params["log"]."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        params = event.payload

        async def reserve() -> str:
            _log(params["log"], "reserve")
            return "reserved"

        async def charge() -> str:
            _log(params["log"], "charge card")
            if not Path(params["fix"]).exists():  # noqa: ASYNC240
                raise NonRetryableError("card declined")
            return "charged"

        async def ship() -> str:
            _log(params["log"], "ship")
            return "shipped"

        reserved = await step.do("reserve", reserve)
        approval = await step.wait_for_event("approval", "approve", timeout="1 hour")
        charged = await step.do("charge card", charge)
        return [reserved, approval.payload, charged, await step.do("ship", ship)]


class CollectorWorkflow(WorkflowEntrypoint[Any, Any]):
    """Waits for a "go" event and returns its payload."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        received = await step.wait_for_event("wait for go", "go", timeout="1 hour")
        return {"got": received.payload}


class BlockerWorkflow(WorkflowEntrypoint[Any, Any]):
    """A step that runs until the file params["gate"] exists; params["started"] is written
    when it starts, and the same path with the suffix .cancelled when it is cancelled."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        gate = Path(event.payload["gate"])

        async def block() -> str:
            started = Path(event.payload["started"])
            started.write_text("started")  # noqa: ASYNC240
            try:
                while not gate.exists():  # noqa: ASYNC110, ASYNC240
                    await asyncio.sleep(0.02)
            except asyncio.CancelledError:
                started.with_suffix(".cancelled").write_text("cancelled")
                raise
            return "passed"

        return await step.do("block", block)
