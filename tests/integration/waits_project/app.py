"""Workflows of the gathered-waits host tests: waits awaited together, and a race."""

from __future__ import annotations

import asyncio
from typing import Any

from durableflow import EventTimeoutError, WorkflowEntrypoint, WorkflowEvent, WorkflowStep


class GatheredWaits(WorkflowEntrypoint[Any, Any]):
    """Sleeps of params["sleeps"] milliseconds and waits for the event types
    params["events"], all in one asyncio.gather; returns the events' payloads."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        params = event.payload
        sleeps = [step.sleep(f"sleep-{n}", ms) for n, ms in enumerate(params.get("sleeps", []))]
        waits = [
            step.wait_for_event(f"wait-{type}", type, timeout=params.get("timeout_ms", 60_000))
            for type in params.get("events", [])
        ]
        results = await asyncio.gather(*sleeps, *waits)
        return [r.payload for r in results[len(sleeps) :] if r is not None]


class Approval(WorkflowEntrypoint[Any, Any]):
    """Waits for an "approved" event; reminds once after params["remind_ms"] and gives up
    params["give_up_ms"] after asking."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        params = event.payload
        approval = asyncio.ensure_future(
            step.wait_for_event("approval", "approved", timeout=params["give_up_ms"])
        )
        reminder = asyncio.ensure_future(step.sleep("reminder", params["remind_ms"]))
        done, _ = await asyncio.wait({approval, reminder}, return_when=asyncio.FIRST_COMPLETED)
        if reminder in done:

            async def remind() -> str:
                return "reminded"

            await step.do("remind", remind)
        else:
            reminder.cancel()
        try:
            decision = await approval
        except EventTimeoutError:
            return "gave up"
        return decision.payload
