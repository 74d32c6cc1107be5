"""The testing kit: introspect_workflow, mocks across restart(), and delete, bulk and
restart-from as a host does them."""

from __future__ import annotations

from typing import Any

import pytest

from durableflow import (
    BulkResult,
    CreateOptions,
    NonRetryableError,
    NotFoundError,
    StepRef,
    ValidationError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from durableflow.testing import InstanceModifier, WorkflowTestEnvironment

CHARGED: list[str] = []


class Order(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def reserve() -> str:
            return "reserved"

        async def charge() -> str:
            CHARGED.append(event.instance_id)
            return "charged"

        reserved = await step.do("reserve", reserve)
        await step.sleep("cool off", "3 days")
        approval = await step.wait_for_event("approval", "approve", timeout="1 hour")
        return [reserved, approval.payload, await step.do("charge card", charge)]


async def test_introspect_workflow_mocks_every_instance_created_afterwards() -> None:
    """Mocks set with modify_all apply to each instance created after introspect_workflow
    (each counting its own mock uses), not to one created before; get() lists them."""
    CHARGED.clear()
    async with WorkflowTestEnvironment({"orders": Order}) as env:
        orders = env.workflow(Order)
        before = await orders.create(id="before")
        with env.introspect_workflow(Order) as probe:
            assert env.introspect_workflow("orders") is probe

            def setup(m: InstanceModifier) -> None:
                m.disable_sleeps()
                m.mock_step_result("reserve", "mocked")
                m.mock_step_error("charge card", RuntimeError("flaky"), times=1)
                m.mock_event("approve", {"ok": True})

            assert probe.modify_all(setup) is None
            first = await orders.create(id="a")
            [second] = await orders.create_batch([CreateOptions(id="b")])
            assert [p.instance_id for p in probe.get()] == ["a", "b"]
            for instance in (first, second):
                output = await instance.result(timeout=10)
                assert output == ["mocked", {"ok": True}, "charged"]
            for introspector in probe.get():
                [attempts] = [
                    s["attempts"]
                    for s in await introspector.get_steps()
                    if s["name"] == "charge card"
                ]
                assert attempts == 2  # each instance failed its first attempt once
        after = await orders.create(id="after")  # disposed: no mocks
        await env.wait_until_idle()
        assert [p.instance_id for p in probe.get()] == ["a", "b"]
        assert (await after.status()).status == "waiting"
        assert (await before.status()).status == "waiting"
        assert sorted(CHARGED) == ["a", "b"]


async def test_async_modify_all_and_mocks_survive_restart() -> None:
    """A mocked event is delivered again to the restarted run (full restart, or from the
    wait that took it), and not again when the wait that took it is kept."""
    CHARGED.clear()
    async with WorkflowTestEnvironment({"orders": Order}) as env:
        probe = env.introspect_workflow(Order)

        async def setup(m: InstanceModifier) -> None:
            m.disable_sleeps()
            m.mock_event("approve", "yes")

        await probe.modify_all(setup)  # type: ignore[misc]
        instance = await env.workflow(Order).create(id="r")
        assert await instance.result(timeout=10) == ["reserved", "yes", "charged"]

        await instance.restart()
        assert await instance.result(timeout=10) == ["reserved", "yes", "charged"]
        await instance.restart(from_step=StepRef("approval", type="wait_for_event"))
        assert await instance.result(timeout=10) == ["reserved", "yes", "charged"]
        await instance.restart(from_step={"name": "charge card"})
        assert await instance.result(timeout=10) == ["reserved", "yes", "charged"]
        assert CHARGED == ["r"] * 4
        [introspector] = probe.get()
        steps = await introspector.get_steps()
        assert [s["name"] for s in steps] == ["reserve", "cool off", "approval", "charge card"]
        with pytest.raises(ValidationError, match="'charge'"):
            await instance.restart(from_step=StepRef("charge"))

        # the per-instance introspector's mocks survive restart() too
        single = env.introspect("single")
        single.disable_sleeps()
        single.mock_event("approve", "one")
        other = await env.workflow(Order).create(id="single")
        assert await other.result(timeout=10) == ["reserved", "one", "charged"]
        await other.restart()
        assert await other.result(timeout=10) == ["reserved", "one", "charged"]


async def test_delete_and_bulk_in_the_kit() -> None:
    """delete() and bulk() work in the kit: a deleted instance is gone and its id free."""
    async with WorkflowTestEnvironment({"orders": Order}) as env:
        orders = env.workflow(Order)
        created = [await orders.create(id=f"k{i}") for i in range(3)]
        await env.wait_until_idle()
        results = await orders.bulk("pause", status="waiting")
        assert sorted(r.id for r in results) == ["k0", "k1", "k2"]
        assert {r.result for r in results} == {"applied"}
        assert await orders.bulk("resume", ids=["k0", "nope"]) == [
            BulkResult("k0", "applied", None, "queued"),
            BulkResult("nope", "skipped", "not found", None),
        ]
        await created[0].delete()
        with pytest.raises(NotFoundError):
            await created[0].status()
        assert await orders.delete_batch(["k0", "k1"]) == ["k1"]
        again = await orders.create(id="k0")
        await env.wait_until_idle()
        assert (await again.status()).status == "waiting"
        assert await orders.bulk("terminate", ids=["k2"]) == [
            BulkResult("k2", "applied", None, "terminated")
        ]
        with pytest.raises(ValidationError, match="exactly one"):
            await orders.bulk("delete", ids=["k0"], status="waiting")


class Failing(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def boom() -> None:
            raise NonRetryableError("no")

        return await step.do("boom", boom)


async def test_workflow_mocks_of_errors_and_event_timeouts() -> None:
    """A mocked step result replaces a failing step for every instance created next."""
    async with WorkflowTestEnvironment({"failing": Failing}) as env:
        probe = env.introspect_workflow(Failing)
        probe.modify_all(lambda m: m.mock_step_result("boom", 42))
        assert await (await env.workflow(Failing).create()).result(timeout=10) == 42
        probe.dispose()
        failed = await env.workflow(Failing).create()
        status = await env.introspect(failed.id, Failing).wait_for_status("errored")
        assert status.error is not None and status.error.message == "no"
