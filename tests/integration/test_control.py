"""Status and control: waiting, waitingForPause, pause, resume, terminate, restart."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from durableflow import InvalidTransitionError, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from durableflow.testing import WorkflowTestEnvironment
from tests.helpers import eventually

RAN: list[str] = []
GATE: list[asyncio.Event] = []


class Pausable(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def slow() -> str:
            RAN.append("slow")
            await GATE[0].wait()
            return "slow done"

        first = await step.do("slow", slow)
        await step.sleep("nap", "1 hour")

        async def last() -> str:
            RAN.append("last")
            return "last done"

        return [first, await step.do("last", last)]


async def test_pause_during_a_step_waits_for_it_and_holds_past_wake_up():
    """pause() while a step runs reports waitingForPause, then paused; resume finishes the run."""
    RAN.clear()
    GATE[:] = [asyncio.Event()]
    async with WorkflowTestEnvironment({"p": Pausable}) as env:
        probe = env.introspect("p")
        inst = await env.workflow(Pausable).create(id="p")
        await probe.wait_for_status("running")
        await eventually(lambda: RAN == ["slow"], message="the slow step started")

        async def start_recorded() -> bool:  # an attempt in flight is already on record
            steps = await probe.get_steps()
            return [(s["name"], s["status"], s["attempts"]) for s in steps] == [
                ("slow", "running", 1)
            ]

        await eventually(start_recorded, message="the running attempt is stored")
        await inst.pause()
        assert (await inst.status()).status == "waitingForPause"
        GATE[0].set()
        await probe.wait_for_status("paused")
        env.advance("2 hours")  # past the sleep's wake-up: a paused instance stays paused
        await env.wait_until_idle()
        assert (await inst.status()).status == "paused"
        assert RAN == ["slow"]
        await inst.resume()
        with pytest.raises(InvalidTransitionError, match="not paused"):
            await inst.resume()
        status = await probe.wait_for_status("complete")
        assert status.output == ["slow done", "last done"]
        assert RAN == ["slow", "last"]


async def test_pause_a_sleeping_instance_and_resume_it():
    """A waiting instance pauses at once and, once resumed, sleeps out the rest of its sleep."""
    RAN.clear()
    GATE[:] = [asyncio.Event()]
    GATE[0].set()
    async with WorkflowTestEnvironment({"p": Pausable}) as env:
        probe = env.introspect("p")
        inst = await env.workflow(Pausable).create(id="p")
        await probe.wait_for_status("waiting")
        await inst.pause()
        assert (await inst.status()).status == "paused"
        await inst.resume()
        status = await probe.wait_for_status("complete")
        assert status.output == ["slow done", "last done"]


async def test_terminate_stops_for_good():
    """A terminated instance runs no further step, and terminating it again is an error."""
    RAN.clear()
    GATE[:] = [asyncio.Event()]
    async with WorkflowTestEnvironment({"p": Pausable}) as env:
        probe = env.introspect("p")
        inst = await env.workflow(Pausable).create(id="p")
        await eventually(lambda: RAN == ["slow"], message="the slow step started")
        await inst.terminate()
        assert (await inst.status()).status == "terminated"
        GATE[0].set()
        env.advance("2 hours")
        await env.wait_until_idle()
        assert RAN == ["slow"]
        assert (await inst.status()).status == "terminated"
        with pytest.raises(InvalidTransitionError, match="terminated"):
            await inst.terminate()
        with pytest.raises(InvalidTransitionError, match="not paused"):
            await inst.resume()
        await inst.restart()  # restart is allowed from any state
        status = await probe.wait_for_status("complete")
        assert status.output == ["slow done", "last done"]


async def test_restart_clears_history_and_runs_again():
    """restart() on a complete instance discards its steps and runs every step again."""
    RAN.clear()
    GATE[:] = [asyncio.Event()]
    GATE[0].set()
    async with WorkflowTestEnvironment({"p": Pausable}) as env:
        probe = env.introspect("p")
        inst = await env.workflow(Pausable).create(id="p")
        await probe.wait_for_status("complete")
        with pytest.raises(InvalidTransitionError, match="complete"):
            await inst.resume()
        with pytest.raises(InvalidTransitionError, match="complete"):
            await inst.pause()
        await inst.restart()
        assert (await inst.status()).status in ("queued", "running", "waiting")
        await probe.wait_for_status("complete")
        assert RAN == ["slow", "last", "slow", "last"]
