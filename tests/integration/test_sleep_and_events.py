"""Sleeps and events: suspension frees memory, timers survive restarts, events are FIFO and exactly-once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from durableflow import EventTimeoutError, WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from durableflow.testing import WorkflowTestEnvironment


class Sleeper(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        before = await step.do("before", _now)
        await step.sleep("nap", "3 days")
        after = await step.do("after", _now)
        return after - before


async def _now() -> float:
    import durableflow_runtime.clock as clock_module

    return CURRENT_CLOCK[0].now() if CURRENT_CLOCK else clock_module.RealClock().now()


CURRENT_CLOCK: list[Any] = []


async def test_sleep_suspends_without_memory_and_resumes_on_time_after_restart():
    """A sleeping instance is only a row; a new engine on the same file wakes it when due."""
    async with WorkflowTestEnvironment({"s": Sleeper}) as env:
        CURRENT_CLOCK[:] = [env._runtime_or_fail().clock]  # type: ignore[attr-defined]
        probe = env.introspect("s")
        await env.workflow(Sleeper).create(id="s")
        await probe.wait_for_status("waiting")
        assert env._runtime_or_fail().engine._active == {}  # type: ignore[attr-defined]
        nap = next(s for s in await probe.get_steps() if s["name"] == "nap")
        assert nap["status"] == "waiting" and nap["wake_at"] is not None
        await env.restart()
        CURRENT_CLOCK[:] = [env._runtime_or_fail().clock]  # type: ignore[attr-defined]
        env.advance(timedelta(days=1))
        st = await probe.get_output()
        assert st is None  # not due yet after one day
        status = await probe.wait_for_status("complete")
        assert status.output >= 3 * 86400
        assert status.output < 3 * 86400 + 60
    CURRENT_CLOCK.clear()


class Waiter(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        first = await step.wait_for_event("first", "vote", timeout="1 hour")
        second = await step.wait_for_event("second", "vote", timeout="1 hour")
        await step.sleep("between", "10 minutes")
        third = await step.wait_for_event("third", "vote", timeout="1 hour")
        return [first.payload, second.payload, third.payload]


async def test_events_match_by_type_fifo_and_early_events_are_kept():
    """Events sent before the waits are buffered and delivered first in, first out."""
    async with WorkflowTestEnvironment({"w": Waiter}) as env:
        probe = env.introspect("w")
        inst = await env.workflow(Waiter).create(id="w")
        await inst.send_event(type="vote", payload="a")
        await inst.send_event(type="other", payload="ignored")
        await inst.send_event(type="vote", payload="b")
        await probe.wait_for_status("waiting")
        await inst.send_event(type="vote", payload="c")
        status = await probe.wait_for_status("complete")
        assert status.output == ["a", "b", "c"]


async def test_consumed_event_is_never_delivered_twice_across_restarts():
    """An event consumed before a restart is not delivered again to a later wait."""
    async with WorkflowTestEnvironment({"w": Waiter}) as env:
        probe = env.introspect("w")
        inst = await env.workflow(Waiter).create(id="w")
        await inst.send_event(type="vote", payload="a")
        await probe.wait_for_status("waiting")  # consumed "a", waits for the second vote
        await env.restart()
        await inst.send_event(type="vote", payload="b")
        await inst.send_event(type="vote", payload="c")
        status = await probe.wait_for_status("complete")
        assert status.output == ["a", "b", "c"]


class Impatient(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        try:
            await step.wait_for_event("approval", "approve", timeout="2 hours")
        except EventTimeoutError as exc:
            caught = exc.event_type
        await step.wait_for_event("final", "approve", timeout="1 hour")
        return caught


async def test_event_timeout_raises_into_run_and_uncaught_errors_the_instance():
    """A timed-out wait raises EventTimeoutError that run() may catch; uncaught, the instance errors."""
    async with WorkflowTestEnvironment({"i": Impatient}) as env:
        probe = env.introspect("i")
        await env.workflow(Impatient).create(id="i")
        status = await probe.wait_for_status("errored")
        assert status.error is not None and status.error.name == "EventTimeoutError"
        steps = await probe.get_steps()
        assert [(s["name"], s["status"]) for s in steps] == [
            ("approval", "failed"),
            ("final", "failed"),
        ]


async def test_event_after_the_instance_ended_is_refused():
    """Sending an event to a finished instance is a clear error."""
    from durableflow import InvalidTransitionError

    async with WorkflowTestEnvironment({"i": Impatient}) as env:
        probe = env.introspect("i")
        inst = await env.workflow(Impatient).create(id="i")
        await probe.wait_for_status("errored")
        import pytest

        with pytest.raises(InvalidTransitionError, match="errored"):
            await inst.send_event(type="approve", payload=None)
