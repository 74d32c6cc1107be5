"""The testing kit: mocks, forced timeouts, injected events, and waits, as users would use them."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest

from durableflow import (
    StepFailedError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from durableflow.testing import WorkflowTestEnvironment

CHARGED: list[str] = []


@attrs.frozen
class Order:
    order_id: str
    cents: int


class OrderFlow(WorkflowEntrypoint[Any, Order]):
    async def run(self, event: WorkflowEvent[Order], step: WorkflowStep) -> Any:
        order = event.payload

        @step.do("charge card", config={"retries": {"limit": 2, "delay": "1 minute"}})
        async def charge() -> dict[str, str]:
            CHARGED.append(order.order_id)
            return {"charge_id": f"ch_{order.order_id}"}

        try:
            charge_result = await charge()
        except StepFailedError as exc:
            return {"failed": exc.error_name}
        await step.sleep("cooling off", "14 days")
        approval = await step.wait_for_event("approval", "approved", timeout="7 days")
        return {"charge": charge_result["charge_id"], "by": approval.payload["by"]}


async def test_mocked_step_event_and_sleep_run_a_two_week_workflow_instantly():
    """mock_step_result, mock_event and virtual time finish a 14-day workflow without running the charge."""
    CHARGED.clear()
    async with WorkflowTestEnvironment({"ORDERS": OrderFlow}) as env:
        probe = env.introspect("o-1")
        probe.mock_step_result("charge card", {"charge_id": "ch_mock"})
        probe.mock_event("approved", {"by": "ana"})
        await env.workflow(OrderFlow).create(id="o-1", params=Order("o-1", 999))
        status = await probe.wait_for_status("complete")
        assert status.output == {"charge": "ch_mock", "by": "ana"}
        assert CHARGED == []
        assert await probe.wait_for_step_result("charge card") == {"charge_id": "ch_mock"}


async def test_mock_step_error_with_times_then_real_result():
    """mock_step_error(times=2) fails two attempts, the third runs the real callback."""
    CHARGED.clear()
    async with WorkflowTestEnvironment({"ORDERS": OrderFlow}) as env:
        probe = env.introspect("o-2")
        probe.mock_step_error("charge card", ConnectionError("bank down"), times=2)
        probe.disable_sleeps()
        await env.workflow(OrderFlow).create(id="o-2", params=Order("o-2", 5))
        assert await probe.wait_for_step_result("charge card") == {"charge_id": "ch_o-2"}
        steps = await probe.get_steps()
        assert steps[0]["attempts"] == 3
        assert [a["error"] and a["error"]["name"] for a in steps[0]["attempt_log"]] == [
            "ConnectionError",
            "ConnectionError",
            None,
        ]
        assert CHARGED == ["o-2"]


async def test_forced_step_timeout_exhausts_retries():
    """force_step_timeout makes every attempt time out; run() sees StepTimeoutError."""
    async with WorkflowTestEnvironment({"ORDERS": OrderFlow}) as env:
        probe = env.introspect("o-3")
        probe.force_step_timeout("charge card")
        probe.disable_retry_delays()
        await env.workflow(OrderFlow).create(id="o-3", params=Order("o-3", 5))
        status = await probe.wait_for_status("complete")
        assert status.output == {"failed": "StepTimeoutError"}


async def test_forced_event_timeout_errors_the_instance():
    """force_event_timeout makes the wait time out at once; uncaught, the instance errors."""
    async with WorkflowTestEnvironment({"ORDERS": OrderFlow}) as env:
        probe = env.introspect("o-4")
        probe.mock_step_result("charge card", {"charge_id": "x"})
        probe.force_event_timeout("approval")
        await env.workflow(OrderFlow).create(id="o-4", params=Order("o-4", 5))
        await probe.wait_for_status("errored")
        error = await probe.get_error()
        assert error is not None and error.name == "EventTimeoutError"


async def test_wait_for_status_times_out_with_a_clear_message():
    """A status that is never reached fails the wait with the status the instance has."""
    async with WorkflowTestEnvironment({"ORDERS": OrderFlow}, virtual_time=False) as env:
        probe = env.introspect("o-5")
        probe.mock_step_result("charge card", {"charge_id": "x"})
        await env.workflow(OrderFlow).create(id="o-5", params=Order("o-5", 5))
        with pytest.raises(TimeoutError, match="waiting"):
            await probe.wait_for_status("complete", timeout=0.5)


def _tick(n: int, seconds: float = 0.0) -> Any:
    async def tick() -> None:
        await asyncio.sleep(seconds)  # a step that takes real time
        TICKS.append(n)

    return tick


class Ticker(WorkflowEntrypoint[Any, Any]):
    """Three steps that each take real time, a one-hour sleep, a step, an event, a step."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        for n in range(3):
            await step.do(f"tick {n}", _tick(n, 0.02))
        await step.sleep("nap", "1 hour")
        await step.do("tick 3", _tick(3))
        got = await step.wait_for_event("go", "go", timeout="1 day")
        await step.do("tick 4", _tick(4))
        return got.payload


TICKS: list[int] = []


async def test_wait_until_idle_runs_what_is_due_and_no_further():
    """wait_until_idle returns once every due step has run; a later timer stays pending."""
    TICKS.clear()
    async with WorkflowTestEnvironment([Ticker]) as env:
        probe = env.introspect("t")
        start = env.now()
        await env.workflow(Ticker).create(id="t")
        await env.wait_until_idle()
        assert TICKS == [0, 1, 2]
        assert (await probe.wait_for_status("waiting", timeout=0)).status == "waiting"
        assert env.now() == start  # virtual time stood still: the nap is still ahead
        env.advance("1 hour")
        await env.wait_until_idle()
        assert TICKS == [0, 1, 2, 3]  # now waiting for its event
        await env.wait_until_idle()  # idle already: returns at once
        await (await env.workflow(Ticker).get("t")).send_event(type="go", payload="now")
        await env.wait_until_idle()
        assert TICKS == [0, 1, 2, 3, 4]
        assert await probe.get_output() == "now"


class Stuck(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def forever() -> None:
            await asyncio.Event().wait()

        return await step.do("forever", forever)


async def test_wait_until_idle_times_out_while_a_step_runs():
    """A step that never returns keeps the engine busy: wait_until_idle raises TimeoutError."""
    async with WorkflowTestEnvironment([Stuck]) as env:
        await env.workflow(Stuck).create(id="s")
        with pytest.raises(TimeoutError, match=r"not idle within 0\.2s"):
            await env.wait_until_idle(timeout=0.2)
        await (await env.workflow(Stuck).get("s")).terminate()
        await env.wait_until_idle()


async def test_wait_until_idle_with_wall_clock_time():
    """With virtual_time=False, wait_until_idle also waits for what is due and returns."""
    TICKS.clear()
    async with WorkflowTestEnvironment([Ticker], virtual_time=False) as env:
        await env.workflow(Ticker).create(id="t")
        await env.wait_until_idle()
        assert TICKS == [0, 1, 2]
