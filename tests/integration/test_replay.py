"""Replay: stored results are reused, step keys are (name, occurrence), history is checked."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest

from durableflow import (
    InvalidParamsError,
    StepFailedError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from durableflow.testing import WorkflowTestEnvironment

CALLS: list[str] = []


@attrs.frozen
class Quote:
    sku: str
    cents: int


@attrs.frozen
class OrderParams:
    sku: str
    quantity: int


class Replayed(WorkflowEntrypoint[Any, OrderParams]):
    async def run(self, event: WorkflowEvent[OrderParams], step: WorkflowStep) -> Any:
        async def quote() -> Quote:
            CALLS.append("quote")
            return Quote(event.payload.sku, 250 * event.payload.quantity)

        q = await step.do("quote", quote)
        assert isinstance(q, Quote)  # also true on replay: restored into the annotation
        first = await step.do("x", _value(1))
        second = await step.do("x", _value(2))
        await step.sleep("pause", "1 hour")
        again = await step.do("quote", quote)  # a second occurrence: a new step
        return {"total": q.cents, "xs": [first, second], "again": again.cents}


def _value(v: int) -> Any:
    async def callback() -> int:
        CALLS.append(f"x{v}")
        return v

    return callback


async def test_stored_results_are_not_recomputed_on_replay():
    """After a sleep, run() replays from the top and stored steps return without running."""
    CALLS.clear()
    async with WorkflowTestEnvironment({"orders": Replayed}) as env:
        probe = env.introspect("o1")
        await env.workflow(Replayed).create(id="o1", params=OrderParams("pen", 2))
        status = await probe.wait_for_status("complete")
        assert status.output == {"total": 500, "xs": [1, 2], "again": 500}
        assert CALLS == ["quote", "x1", "x2", "quote"]
        steps = await probe.get_steps()
        assert [(s["name"], s["count"], s["type"]) for s in steps] == [
            ("quote", 1, "do"),
            ("x", 1, "do"),
            ("x", 2, "do"),
            ("pause", 1, "sleep"),
            ("quote", 2, "do"),
        ]


async def test_params_that_do_not_fit_are_rejected_at_create():
    """create() rejects params that do not structure into ParamsT, naming the field; nothing is stored."""
    async with WorkflowTestEnvironment({"orders": Replayed}) as env:
        wf = env.workflow(Replayed)
        with pytest.raises(InvalidParamsError, match="quantity"):
            await wf.create(id="bad", params={"sku": "pen", "quantity": "many"})  # type: ignore[arg-type]
        with pytest.raises(InvalidParamsError, match="required"):
            await wf.create(id="bad")
        from durableflow import NotFoundError

        with pytest.raises(NotFoundError):
            await wf.get("bad")


class Flaky(WorkflowEntrypoint[Any, Any]):
    """Version 1 runs a then b; version 2 (after the sleep) asks for c first."""

    code_version = 1

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        await step.do("a", _value(1))
        if Flaky.code_version == 1:
            await step.do("b", _value(2))
        else:
            await step.do("c", _value(3))
        await step.sleep("wait", "1 day")
        return "done"


async def test_replay_that_disagrees_with_history_fails_naming_both_steps():
    """Code that asks for other steps than its history holds errors, naming expected and found."""
    Flaky.code_version = 1
    async with WorkflowTestEnvironment({"flaky": Flaky}) as env:
        probe = env.introspect("f1")
        await env.workflow(Flaky).create(id="f1")
        await probe.wait_for_status("waiting")
        await env.stop()
        Flaky.code_version = 2
        await env.start()
        status = await probe.wait_for_status(["errored", "complete"])
        assert status.status == "errored"
        assert status.error is not None
        assert status.error.name == "NonDeterminismError"
        assert "'b'" in status.error.message and "'c'" in status.error.message


class Unserializable(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def bad() -> object:
            return object()

        try:
            await step.do("make object", bad)
        except StepFailedError as exc:
            return {"caught": exc.error_message}
        return "unreachable"


async def test_non_json_result_fails_the_step_naming_step_and_type():
    """A result that is not JSON-representable fails its step (no retries) with a clear message."""
    async with WorkflowTestEnvironment({"u": Unserializable}) as env:
        probe = env.introspect("u1")
        await env.workflow(Unserializable).create(id="u1")
        status = await probe.wait_for_status("complete")
        message = status.output["caught"]
        assert "make object" in message and "object" in message
        [step] = await probe.get_steps()
        assert step["status"] == "failed" and step["attempts"] == 1


class Concurrent(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def branch(tag: str) -> list[int]:
            first = await step.do(f"{tag}-1", _slow(1))
            second = await step.do(f"{tag}-2", _slow(2))
            return [first, second]

        results = await asyncio.gather(
            branch("left"), branch("right"), step.sleep("nap", "5 minutes")
        )
        again = await step.do("after", _value(9))
        return [results[0], results[1], again]


def _slow(v: int) -> Any:
    async def callback() -> int:
        CALLS.append(f"slow{v}")
        await asyncio.sleep(0.01)
        return v

    return callback


async def test_concurrent_steps_replay_without_false_nondeterminism():
    """Steps run with asyncio.gather are memoized one by one and replay cleanly."""
    CALLS.clear()
    async with WorkflowTestEnvironment({"c": Concurrent}) as env:
        probe = env.introspect("c1")
        await env.workflow(Concurrent).create(id="c1")
        status = await probe.wait_for_status(["complete", "errored"])
        assert status.status == "complete", status
        assert status.output == [[1, 2], [1, 2], 9]
        assert sorted(CALLS) == ["slow1", "slow1", "slow2", "slow2", "x9"]
