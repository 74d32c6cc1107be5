"""Child workflows in the testing kit (the real engine on a real SQLite file): what a call
refuses, a typed child output, and a replay after the kit restarts its engine."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs

from durableflow import (
    ChildWorkflowError,
    InstanceExistsError,
    ValidationError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from durableflow.testing import WorkflowTestEnvironment


@attrs.frozen
class Receipt:
    amount: int


class Pay(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Receipt:
        if event.payload.get("wait"):
            await step.wait_for_event("go", "go", timeout="1 day")
        if event.payload.get("fail"):
            raise ValueError("card declined")
        return Receipt(event.payload["amount"])


class Parent(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        mode = event.payload["mode"]
        if mode == "typed":
            receipt = await step.run_workflow("pay", self.env.PAY, params={"amount": 5})
            return {"type": type(receipt).__name__, "amount": receipt.amount}
        if mode == "taken":
            try:
                await step.run_workflow("pay", self.env.PAY, params={"amount": 1}, id="busy")
            except InstanceExistsError as exc:
                return f"taken: {exc.message}"
        if mode == "twice":
            first = await step.start_workflow(
                "start", self.env.PAY, params={"amount": 1, "wait": True}, id="c-2"
            )
            try:
                await asyncio.gather(
                    step.run_workflow("a", self.env.PAY, id=first),
                    step.run_workflow("b", self.env.PAY, id=first),
                )
            except ValidationError as exc:
                return f"refused: {exc.message}"
        if mode == "foreign":
            try:
                await step.run_workflow("x", object(), params={})  # type: ignore[arg-type]
            except ValidationError as exc:
                return f"refused: {exc.message}"
        if mode == "waits":
            try:
                return await step.run_workflow(
                    "pay", self.env.PAY, params={"amount": 2, "wait": True, "fail": True}
                )
            except ChildWorkflowError as exc:
                return [exc.status, exc.error.name, exc.error.message, exc.step_name]
        return None


async def test_refused_calls_and_a_typed_output() -> None:
    """A child's output is structured into its run() return type; an id another instance
    holds raises InstanceExistsError; a second wait on one child and a binding of no host
    raise ValidationError."""
    async with WorkflowTestEnvironment({"PARENT": Parent, "PAY": Pay}) as env:
        parents = env.workflow(Parent)
        await env.workflow(Pay).create(id="busy", params={"amount": 0})
        for mode in ("typed", "taken", "foreign"):
            await parents.create(id=mode, params={"mode": mode})
        done = {
            m: (await env.introspect(m, Parent).wait_for_status("complete")).output
            for m in ("typed", "taken", "foreign")
        }
        assert done["typed"] == {"type": "Receipt", "amount": 5}
        assert (
            done["taken"]
            == "taken: instance 'busy' of workflow 'PAY' already exists and is not a child of this instance"
        )
        assert done["foreign"].startswith(
            "refused: step 'x': the child's binding must be one of this host's"
        )


async def test_a_failed_child_raises_again_after_the_engine_restarts() -> None:
    """A parent resumed by a new engine replays its finished child wait and raises the same
    ChildWorkflowError; the second wait on one child is refused the same way."""
    async with WorkflowTestEnvironment({"PARENT": Parent, "PAY": Pay}) as env:
        parents = env.workflow(Parent)
        await parents.create(id="w", params={"mode": "waits"})
        await parents.create(id="t", params={"mode": "twice"})
        await env.introspect("w", Parent).wait_for_status("waiting")
        await env.restart()
        [step] = await env.introspect("w", Parent).get_steps()
        child = await env.workflow(Pay).get(step["child"]["id"])
        await child.send_event(type="go")
        status = await env.introspect("w", Parent).wait_for_status("complete")
        assert status.output == ["errored", "ValueError", "card declined", "pay"]
        refused = await env.introspect("t", Parent).wait_for_status("complete")
        assert refused.output.startswith(
            "refused: step 'b': child PAY/c-2 is already waited for by step 'a'"
        )


async def test_terminating_a_child_wakes_its_parent_with_child_workflow_error() -> None:
    """A child terminated while its parent waits raises ChildWorkflowError with status
    terminated in the parent, which goes on."""
    async with WorkflowTestEnvironment({"PARENT": Parent, "PAY": Pay}) as env:
        await env.workflow(Parent).create(id="w", params={"mode": "waits"})
        await env.introspect("w", Parent).wait_for_status("waiting")
        [step] = await env.introspect("w", Parent).get_steps()
        child = await env.workflow(Pay).get(step["child"]["id"])
        await child.terminate()
        status = await env.introspect("w", Parent).wait_for_status("complete")
        assert status.output == ["terminated", "Terminated", "it was terminated", "pay"]


async def test_deleting_a_running_child_wakes_its_parent_as_a_terminated_one() -> None:
    """A running child deleted while its parent waits counts, for the parent, as a
    terminated child: ChildWorkflowError with status terminated, and the parent goes on."""
    async with WorkflowTestEnvironment({"PARENT": Parent, "PAY": Pay}) as env:
        await env.workflow(Parent).create(id="w", params={"mode": "waits"})
        await env.introspect("w", Parent).wait_for_status("waiting")
        [step] = await env.introspect("w", Parent).get_steps()
        child = await env.workflow(Pay).get(step["child"]["id"])
        await child.delete()
        status = await env.introspect("w", Parent).wait_for_status("complete")
        assert status.output == ["terminated", "Terminated", "it was terminated", "pay"]
