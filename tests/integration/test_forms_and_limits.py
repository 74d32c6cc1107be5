"""Every step.do form, the step context, and the limits of the contract."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from durableflow import (
    CreateOptions,
    LimitExceededError,
    StepConfig,
    StepContext,
    StepFailedError,
    ValidationError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from durableflow.testing import WorkflowTestEnvironment
from durableflow_runtime.engine import Engine, Limits, WorkflowSpec
from durableflow_runtime.store.sqlite import SqliteStore

CONTEXTS: list[StepContext] = []


class AllForms(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def plain() -> str:
            return "call"

        async def with_ctx(ctx: StepContext) -> str:
            CONTEXTS.append(ctx)
            if ctx.attempt == 1:
                raise RuntimeError("once more")
            return f"ctx {ctx.name} #{ctx.count}"

        results = [await step.do("call form", plain)]
        results.append(await step.do("config form", {"retries": {"delay": 0}}, with_ctx))
        results.append(
            await step.do("attrs config", StepConfig(timeout="1 minute"), lambda: _async("x"))
        )

        @step.do("named decorator")
        async def first() -> str:
            return "named"

        @step.do()
        async def unnamed_with_parens() -> str:
            return "parens"

        @step.do
        async def bare(ctx: StepContext) -> str:
            return f"bare {ctx.name}"

        @step.do(config={"retries": {"limit": 0}})
        async def configured() -> str:
            return "configured"

        results += [await first(), await unnamed_with_parens(), await bare(), await configured()]
        await step.sleep("then", "1 hour")
        return results


async def _async(value: str) -> str:
    return value


async def test_every_do_form_runs_and_names_default_to_the_function():
    """Call form, config form (dict and attrs), and decorator forms with and without a name."""
    CONTEXTS.clear()
    async with WorkflowTestEnvironment({"forms": AllForms}) as env:
        probe = env.introspect("f")
        await env.workflow(AllForms).create(id="f")
        status = await probe.wait_for_status("complete")
        assert status.output == [
            "call",
            "ctx config form #1",
            "x",
            "named",
            "parens",
            "bare bare",
            "configured",
        ]
        names = [s["name"] for s in await probe.get_steps()]
        assert names[3:7] == ["named decorator", "unnamed_with_parens", "bare", "configured"]
        first, second = CONTEXTS
        assert (first.attempt, second.attempt) == (1, 2)
        assert first.step_id == second.step_id and len(first.step_id) == 32
        assert first.config.retries.limit == 5 and first.config.retries.delay == timedelta(0)


class BadCalls(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        errors = []
        # the last two are wrong in type too: the run-time check is what is under test
        for bad in (
            lambda: step.do("", lambda: _async("x")),
            lambda: step.do("tab\tname", lambda: _async("x")),
            lambda: step.do("x" * 257, lambda: _async("x")),
            lambda: step.do("n", {"retries": {"limit": 1, "nope": 1}}, lambda: _async("x")),  # type: ignore[call-overload]
            lambda: step.do("n", 42, lambda: _async("x")),  # type: ignore[call-overload]
        ):
            try:
                await bad()
            except ValidationError as exc:
                errors.append(type(exc).__name__)
        try:
            await step.sleep("too long", "400 days")
        except LimitExceededError:
            errors.append("sleep limit")
        try:
            await step.wait_for_event("w", "bad type!")
        except ValidationError:
            errors.append("event type")
        return errors


async def test_bad_step_calls_are_clear_errors():
    """Bad names, unknown config keys, a 400-day sleep and a bad event type raise at the call."""
    async with WorkflowTestEnvironment({"bad": BadCalls}) as env:
        probe = env.introspect("b")
        await env.workflow(BadCalls).create(id="b")
        status = await probe.wait_for_status("complete")
        assert status.output == ["ValidationError"] * 5 + ["sleep limit", "event type"]


class Big(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        try:
            await step.do("huge", lambda: _async("x" * 2_000_000))
        except StepFailedError as exc:
            failed = exc.error_name
        for i in range(event.payload["steps"]):
            await step.do(f"s{i}", lambda: _async("ok"))
        return failed


async def test_limits_are_enforced_with_clear_errors(tmp_path: Path) -> None:
    """Oversize results, params, batches and too many steps are errors; stored data stays."""
    limits = Limits(max_payload_bytes=1024 * 1024, max_steps=5, max_batch=3)
    engine = Engine(SqliteStore(tmp_path / "s.db"), [WorkflowSpec("big", Big)], limits=limits)
    async with engine:
        wf = engine.bindings["big"]
        ok = await wf.create(id="ok", params={"steps": 2})
        assert await ok.result(timeout=10) == "LimitExceededError"
        over = await wf.create(id="over", params={"steps": 10})
        with pytest.raises(Exception, match="limit of 5 steps"):
            await over.result(timeout=10)
        with pytest.raises(LimitExceededError, match="params"):
            await wf.create(id="fat", params={"steps": 1, "pad": "x" * 2_000_000})
        with pytest.raises(LimitExceededError, match="at most 3"):
            await wf.create_batch([CreateOptions(id=f"b{i}") for i in range(4)])
        with pytest.raises(ValidationError, match="twice"):
            await wf.create_batch([CreateOptions(id="same"), CreateOptions(id="same")])
        with pytest.raises(ValidationError, match="instance id"):
            await wf.create(id="-starts-with-dash")
        assert (await ok.status()).status == "complete"
        items, _ = await engine.list_instances("big")
        assert {i.id for i in items} == {"ok", "over"}


class Grouped(WorkflowEntrypoint[Any, Any]):
    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def make_id() -> uuid.UUID:
            return uuid.UUID(int=7)

        async with asyncio.TaskGroup() as group:
            a = group.create_task(step.do("a", lambda: _async("a")))
            group.create_task(step.sleep("nap", "1 hour"))
        ident = await step.do("id", make_id)
        await step.sleep("again", "1 hour")  # replays "id" from the store
        assert isinstance(ident, uuid.UUID)

        def not_async() -> str:
            return "sync"

        try:
            await step.do("sync", not_async)  # type: ignore[arg-type]
        except StepFailedError as exc:
            sync_error = exc.error_message
        return [a.result(), str(ident), sync_error]


async def test_task_groups_uuid_results_and_sync_callbacks():
    """A sleep inside a TaskGroup suspends the instance; UUID results survive replay; a
    plain (non-async) callback fails its step once, with a message saying why."""
    async with WorkflowTestEnvironment({"g": Grouped}) as env:
        probe = env.introspect("g")
        await env.workflow(Grouped).create(id="g")
        status = await probe.wait_for_status(["complete", "errored"])
        assert status.status == "complete", status
        a, ident, sync_error = status.output
        assert (a, ident) == ("a", "00000000-0000-0000-0000-000000000007")
        assert "async def" in sync_error
        sync_step = next(s for s in await probe.get_steps() if s["name"] == "sync")
        assert sync_step["attempts"] == 1
