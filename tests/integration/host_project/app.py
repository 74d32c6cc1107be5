"""Workflows and routes of the host tests' project."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import attrs
from aiohttp import web

from durableflow import WorkflowEntrypoint, WorkflowEvent, WorkflowStep
from durableflow.web import ENV_KEY


@attrs.frozen
class Greeting:
    name: str
    times: int = 1


class EchoWorkflow(WorkflowEntrypoint[Any, Greeting]):
    """One step, then its output."""

    async def run(self, event: WorkflowEvent[Greeting], step: WorkflowStep) -> Any:
        greeting = event.payload

        async def greet() -> str:
            return " ".join([f"hello {greeting.name}"] * greeting.times)

        return {"greeting": await step.do("greet", greet), "id": event.instance_id}


class WaiterWorkflow(WorkflowEntrypoint[Any, Any]):
    """Waits for a "go" event and returns its payload."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        received = await step.wait_for_event("wait for go", "go", timeout="1 hour")
        return {"got": received.payload}


class SleeperWorkflow(WorkflowEntrypoint[Any, Any]):
    """A step, a durable sleep of params["ms"] milliseconds, a step."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def before() -> str:
            return "before"

        async def after() -> str:
            return "after"

        first = await step.do("before", before)
        await step.sleep("nap", event.payload["ms"])
        return [first, await step.do("after", after)]


class GateWorkflow(WorkflowEntrypoint[Any, Any]):
    """A step that runs until the file params["gate"] exists (a step in flight)."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        gate = Path(event.payload["gate"])
        started = Path(event.payload["started"])

        async def pass_gate() -> str:
            # files, so that the test process can see the step run and let it finish
            started.write_text("started")  # noqa: ASYNC240
            while not gate.exists():  # noqa: ASYNC110, ASYNC240
                await asyncio.sleep(0.02)
            return gate.read_text()  # noqa: ASYNC240

        return {"gate": await step.do("pass gate", pass_gate)}


class FlakyWorkflow(WorkflowEntrypoint[Any, Any]):
    """A step that always fails: errored after its one retry."""

    async def run(self, event: WorkflowEvent[Any], step: WorkflowStep) -> Any:
        async def fail() -> None:
            raise RuntimeError("always fails")

        await step.do("fail", fail)


routes = web.RouteTableDef()


@routes.post("/greet")
async def greet(request: web.Request) -> web.Response:
    """A user route that starts an echo instance through the env."""
    env = request.config_dict[ENV_KEY]
    body = await request.json()
    instance = await env.ECHO.create(id=body.get("id"), params=body.get("params"))
    return web.json_response({"id": instance.id}, status=201)


@routes.get("/broken")
async def broken(request: web.Request) -> web.Response:
    """A user route with a bug."""
    raise RuntimeError("secret internals")


@routes.get("/teapot")
async def teapot(request: web.Request) -> web.Response:
    """A user route answering with its own error status."""
    raise web.HTTPConflict(text="user says no")
