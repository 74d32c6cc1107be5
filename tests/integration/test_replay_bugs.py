"""Replay-path regressions: typed results never degrade, durations are finite, and a retry
back-off costs one activation, not two."""

from __future__ import annotations

import functools
import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from durableflow import (
    StepContext,
    StepFailedError,
    ValidationError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from durableflow.testing import WorkflowTestEnvironment

if TYPE_CHECKING:
    from tests.integration.host_project.app import Greeting  # only for the type checker


@attrs.frozen
class Order:
    cents: int


class LocalClassFlow(WorkflowEntrypoint[Any, Any]):
    """A step annotated with a class that exists only inside run()."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        @attrs.frozen
        class Receipt:
            cents: int

        async def make() -> Receipt:
            return Receipt(5)

        try:
            receipt = await step.do("make", make)
        except StepFailedError as exc:
            return {"failed": exc.error_message}
        return {"type": type(receipt).__name__}


class TypeCheckingOnlyFlow(WorkflowEntrypoint[Any, Any]):
    """A step annotated with a name imported only under TYPE_CHECKING."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        calls.append("run")

        async def greet() -> Greeting:
            calls.append("callback")
            return {"name": "x"}  # type: ignore[return-value]

        await step.do("greet", greet)
        return "unreachable"


class Pricer:
    async def __call__(self) -> Order:
        return Order(7)


async def priced(base: int) -> Order:
    return Order(base)


class CallablesFlow(WorkflowEntrypoint[Any, Any]):
    """Steps whose callbacks are a callable object and a functools.partial."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        a = await step.do("object", Pricer())
        b = await step.do("partial", functools.partial(priced, 9))
        await step.sleep("replay after this", "1 hour")
        return {"a": [type(a).__name__, a.cents], "b": [type(b).__name__, b.cents]}


calls: list[str] = []


async def test_a_class_defined_in_run_is_restored_to_its_type():
    """A step annotated with a class defined inside run() (string annotations) returns
    that class, not a dict, on the first run and after replay."""
    async with WorkflowTestEnvironment({"LOCAL": LocalClassFlow}) as env:
        instance = await env.workflow(LocalClassFlow).create(id="l-1")
        status = await env.introspect("l-1").wait_for_status("complete")
        assert status.output == {"type": "Receipt"}, await instance.status()


async def test_an_unresolvable_annotation_fails_the_step_without_running_it():
    """A return annotation that names something missing at run time fails the step at
    once (non-retryable, naming the callback and the annotation); the callback never runs."""
    calls.clear()
    async with WorkflowTestEnvironment({"TC": TypeCheckingOnlyFlow}) as env:
        await env.workflow(TypeCheckingOnlyFlow).create(id="t-1")
        status = await env.introspect("t-1").wait_for_status("errored")
    assert status.error is not None
    assert "'Greeting'" in status.error.message and "greet" in status.error.message
    assert "TYPE_CHECKING" in status.error.message
    assert "callback" not in calls


async def test_callable_objects_and_partials_keep_their_types_across_replay():
    """A callable object's and a partial's annotated result types are restored after a
    replay (they used to be cached by identity, without bound)."""
    async with WorkflowTestEnvironment({"C": CallablesFlow}) as env:
        await env.workflow(CallablesFlow).create(id="c-1")
        probe = env.introspect("c-1")
        await probe.wait_for_status("waiting")
        env.advance(timedelta(hours=2).total_seconds())
        status = await probe.wait_for_status("complete")
    assert status.output == {"a": ["Order", 7], "b": ["Order", 9]}


# --- durations --------------------------------------------------------------------------
class SleepFlow(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        try:
            await step.sleep("nap", event.payload["ms"])
        except ValidationError as exc:
            return {"refused": exc.message}
        return "slept"


class UntilFlow(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        try:
            await step.sleep_until("nap", math.inf)
        except ValidationError as exc:
            return {"refused": exc.message}
        return "slept"


class ConfigFlow(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def boom() -> None:
            raise RuntimeError("no")

        config = CONFIGS[event.payload]  # not in params: JSON has no NaN or infinity
        try:
            await step.do("boom", config, boom)
        except ValidationError as exc:
            return {"refused": exc.message}
        return "ran"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None, 1e30])
async def test_sleep_refuses_non_finite_durations(bad):
    """step.sleep with NaN, ±inf, None or a duration past the maximum raises a
    ValidationError that names the step."""
    async with WorkflowTestEnvironment({"S": SleepFlow}) as env:
        await env.workflow(SleepFlow).create(id="s-1", params={"ms": bad})
        status = await env.introspect("s-1").wait_for_status("complete")
    assert "refused" in status.output and "'nap'" in status.output["refused"]


async def test_sleep_until_refuses_infinity():
    """step.sleep_until(inf) is a ValidationError, not a wake-up time out of range."""
    async with WorkflowTestEnvironment({"U": UntilFlow}) as env:
        await env.workflow(UntilFlow).create(id="u-1")
        status = await env.introspect("u-1").wait_for_status("complete")
    assert "finite" in status.output["refused"]


CONFIGS: list[dict[str, Any]] = [
    {"retries": {"delay": math.inf}},
    {"timeout": math.inf},
    {"retries": {"delay": math.nan}},
]


@pytest.mark.parametrize("config", range(len(CONFIGS)))
async def test_step_configs_refuse_non_finite_durations(config):
    """Infinite or NaN delays and timeouts in a step config are refused before the step
    runs, so the instance detail stays readable."""
    async with WorkflowTestEnvironment({"K": ConfigFlow}) as env:
        await env.workflow(ConfigFlow).create(id="k-1", params=config)
        probe = env.introspect("k-1")
        status = await probe.wait_for_status("complete")
        assert "finite" in status.output["refused"]
        await probe.get_steps()  # the detail reads


# --- one activation per wake-up ---------------------------------------------------------
activations: list[str] = []


class RetryFlow(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        activations.append("run")

        @step.do("flaky", config={"retries": {"limit": 3, "delay": "1 minute"}})
        async def flaky(ctx: StepContext) -> int:
            if ctx.attempt < 3:
                raise RuntimeError(f"attempt {ctx.attempt}")
            return ctx.attempt

        return await flaky()


async def test_a_retry_back_off_costs_one_activation():
    """Two failed attempts with a back-off replay run() three times in all (the first
    run and one per wake-up), not five."""
    activations.clear()
    async with WorkflowTestEnvironment({"R": RetryFlow}) as env:
        await env.workflow(RetryFlow).create(id="r-1")
        probe = env.introspect("r-1")
        for _ in range(2):
            await probe.wait_for_status("waiting")
            env.advance(120)
        status = await probe.wait_for_status("complete")
    assert status.output == 3
    assert activations == ["run", "run", "run"]
