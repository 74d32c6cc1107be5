"""Workflows of the rollback tests. Each writes what it does, one line per effect, to
the file ``log`` in the directory ``params["dir"]``; a rollback handler of a step named
in ``params["hold"]`` waits until the file ``release`` exists there."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from durableflow import (
    NonRetryableError,
    RollbackContext,
    StepContext,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)


def note(folder: Path, line: str) -> None:
    with (folder / "log").open("a") as log:
        log.write(line + "\n")


def undo_with(params: dict[str, Any]) -> Any:
    """The rollback handler of every step: logs its start and end; holds or fails when
    the params say so."""
    folder = Path(params["dir"])

    async def undo(ctx: RollbackContext[Any]) -> None:
        name = ctx.step.name
        note(folder, f"undo {name} output={ctx.output} error={ctx.error.name}")
        if name in params.get("hold", []):
            while not (folder / "release").exists():  # noqa: ASYNC110 (another process makes it)
                await asyncio.sleep(0.02)
        if name in params.get("fail_undo", []):
            raise RuntimeError(f"cannot undo {name}")
        note(folder, f"undone {name}")

    return undo


class SagaWorkflow(WorkflowEntrypoint[Any, dict[str, Any]]):
    """reserve, charge, ship: ship fails (unless params["ship"] is "ok", then it sleeps an
    hour); every step has a rollback."""

    async def run(self, event: WorkflowEvent[dict[str, Any]], step: WorkflowStep) -> Any:
        params = event.payload
        folder = Path(params["dir"])
        undo = undo_with(params)

        async def reserve(ctx: StepContext) -> str:
            note(folder, "do reserve")
            return f"room-{ctx.step_id[:6]}"

        async def charge() -> int:
            note(folder, "do charge")
            return 120

        async def ship() -> str:
            note(folder, "do ship")
            raise NonRetryableError("no courier")

        room = await step.do("reserve", reserve, rollback=undo)
        await step.do(
            "charge",
            {"retries": {"limit": 0}},
            charge,
            rollback=undo,
            rollback_config={"retries": {"limit": 1, "delay": "10 ms", "backoff": "constant"}},
        )
        if params.get("ship") == "ok":
            await step.sleep("wait for the courier", "1 hour")
            return room
        await step.do("ship", ship, rollback=undo)
        return room


class HeldWorkflow(WorkflowEntrypoint[Any, dict[str, Any]]):
    """One step with a rollback, then an hour's sleep (to be terminated)."""

    async def run(self, event: WorkflowEvent[dict[str, Any]], step: WorkflowStep) -> Any:
        folder = Path(event.payload["dir"])

        @step.do("book", rollback=undo_with(event.payload))
        async def book() -> str:
            note(folder, "do book")
            return "booked"

        await book()
        await step.sleep("hold", "1 hour")
        return "done"


class AgainWorkflow(WorkflowEntrypoint[Any, dict[str, Any]]):
    """A step that succeeds, then one that fails until it ran params["succeed_on"] times
    (never, when absent); ``run_retries`` runs it again."""

    async def run(self, event: WorkflowEvent[dict[str, Any]], step: WorkflowStep) -> Any:
        params = event.payload
        folder = Path(params["dir"])

        async def first() -> int:
            note(folder, "do first")
            return 1

        async def flaky() -> int:
            runs = (folder / "log").read_text().count("do flaky") + 1
            note(folder, "do flaky")
            if runs < params.get("succeed_on", 1_000):
                raise RuntimeError(f"flaky run {runs}")
            return runs

        await step.do("first", first, rollback=undo_with(params))
        return await step.do("flaky", flaky)
