"""Workflows that write streams and logs, for the stream and instance-log tests."""

from __future__ import annotations

from typing import Any

from durableflow import StepContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep


class TalkerWorkflow(WorkflowEntrypoint[Any, Any]):
    """Writes ``first`` chunks to "tokens", waits for a "go" event, writes ``then`` more,
    and logs from run() and from its steps on the way."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        params = event.payload or {}
        first, then = int(params.get("first", 5)), int(params.get("then", 5))
        step.log("started", first=first)

        async def speak(ctx: StepContext) -> int:
            for i in range(first):
                await ctx.stream("tokens").write({"i": i})
            ctx.log("spoke", chunks=first)
            return first

        await step.do("speak", speak)
        step.log("waiting for go")
        await step.wait_for_event("go", "go", timeout="1 hour")
        step.log("got go", level="warning")

        async def more(ctx: StepContext) -> int:
            for i in range(first, first + then):
                await ctx.stream("tokens").write({"i": i})
            await ctx.stream().write("plain text")
            await ctx.stream().write(b"\x00\xffbytes")
            return then

        await step.do("more", more)
        step.log("done")
        return "done"


class RetrierWorkflow(WorkflowEntrypoint[Any, Any]):
    """A step that writes a chunk and fails on its first attempt, then succeeds."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def attempt(ctx: StepContext) -> int:
            await ctx.stream().write(f"attempt {ctx.attempt}")
            ctx.log("trying", level="error" if ctx.attempt == 1 else "info")
            if ctx.attempt == 1:
                raise RuntimeError("first attempt fails")
            return ctx.attempt

        return await step.do("flaky", attempt)
