"""Hooks and webhooks through the testing kit (an in-process engine on a real SQLite file):
the orderings and types that are hard to pin down over HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from durableflow import (
    NotFoundError,
    ValidationError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from durableflow.testing import WorkflowTestEnvironment


class EarlyCaller(WorkflowEntrypoint[Any, Any]):
    """Makes a webhook, sleeps an hour, then waits on it."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        webhook = await step.create_webhook("callback")
        await step.sleep("meanwhile", "1 hour")
        request = await webhook.wait(timeout="1 day")
        return request.text()


class TwoHooks(WorkflowEntrypoint[Any, Any]):
    """Waits on two hooks at once; the second's payload is a list of ints."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        first, second = await asyncio.gather(
            step.wait_for_event("first", "go", token="two:first"),
            step.wait_for_event("second", "go", token="two:second", payload_type=list[int]),
        )
        return [first.payload, second.payload]


async def test_a_request_before_the_webhook_wait_is_kept_for_it() -> None:
    """A webhook takes a request as soon as it exists: a wait that comes later gets it."""
    async with WorkflowTestEnvironment({"EARLY": EarlyCaller}) as env:
        instance = await env.workflow(EarlyCaller).create(id="e-1")
        url = (await env.introspect("e-1").wait_for_step_result("callback"))["url"]
        await env.wait_until_idle()  # asleep: the wait is not registered yet
        assert await env.call_webhook(url, "early bird", method="PATCH") == 202
        assert await env.call_webhook(url, "second") == 410
        env.advance("1 hour")
        assert await instance.result() == "early bird"


async def test_gathered_hooks_resume_in_any_order_and_a_generic_type_is_checked_on_take() -> None:
    """Two hooks awaited together are each resumed by their own token; a payload whose
    type cannot be checked at send time fails its wait with ValidationError when taken."""
    async with WorkflowTestEnvironment({"TWO": TwoHooks}) as env:
        ok = await env.workflow(TwoHooks).create(id="ok")
        await env.wait_until_idle()
        await env.resume_hook("two:second", [1, 2])
        await env.wait_until_idle()
        assert (await ok.status()).status == "waiting"
        await env.resume_hook("two:first", "a")
        assert await ok.result() == ["a", [1, 2]]

        await env.workflow(TwoHooks).create(id="bad")
        await env.wait_until_idle()
        await env.resume_hook("two:second", ["x"])  # list[int] is not checked at send time
        await env.resume_hook("two:first", None)
        status = await env.introspect("bad").wait_for_status("errored")
        assert status.error is not None and status.error.name == "ValidationError"
        with pytest.raises(NotFoundError):
            await env.resume_hook("two:first", None)  # its instance ended


async def test_a_replayed_run_returns_the_same_webhook_and_typed_event() -> None:
    """After an engine restart, replay hands back the recorded webhook and payloads."""
    async with WorkflowTestEnvironment({"EARLY": EarlyCaller}) as env:
        await env.workflow(EarlyCaller).create(id="r-1")
        url = (await env.introspect("r-1").wait_for_step_result("callback"))["url"]
        await env.restart()
        env.advance("1 hour")
        await env.wait_until_idle()
        assert await env.call_webhook(url, "after restart") == 202
        assert await env.workflow(EarlyCaller).get("r-1") is not None
        steps = await env.introspect("r-1").get_steps()
        assert [s["name"] for s in steps] == ["callback", "meanwhile", "callback"]
        assert await (await env.workflow(EarlyCaller).get("r-1")).result() == "after restart"
        with pytest.raises(ValidationError, match="invalid hook token"):
            await env.resume_hook("bad token!", None)
